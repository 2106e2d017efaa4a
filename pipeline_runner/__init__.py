"""The stage runner: extract, transform and load with polars.

Imports the API models only; never the operator, kopf or the Kubernetes client
(a stage Job must stay light).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lineage-hub")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"
