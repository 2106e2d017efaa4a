"""The HTTP gateway: OpenLineage ingestion onto Kafka, runs over HTTP, metrics, health.

A thin front for people and tools that don't speak Kubernetes. It imports the
shared models and helpers in `lineagehub`, never the operator, the runner or the
consumers.
"""
