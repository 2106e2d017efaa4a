"""The stage runner: extract, transform and load with polars.

Imports the API models only; never the operator, kopf or the Kubernetes client
(a stage Job must stay light).
"""
