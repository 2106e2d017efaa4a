"""The local stack: real servers on loopback for the tests and the main job.

No product module imports this package; it serves `lineage-hub stack ...`,
the pytest fixtures and `make demo`.
"""
