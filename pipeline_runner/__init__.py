"""The stage runner: extract, transform and load with polars.

Imports the API models only; never the operator, kopf or the Kubernetes client
(a stage Job must stay light).
"""

#: The lineage-hub release this runner belongs to (pyproject.toml's `version`; a unit
#: test keeps the two equal). Written out rather than read with importlib.metadata,
#: which costs a stage process ~50 ms of CPU at start-up.
__version__ = "0.1.0"
