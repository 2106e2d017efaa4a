"""Kafka topic names, defined once for every producer, consumer and the local stack.

This module imports nothing else of ours, so any component may import it.
"""

from __future__ import annotations

LINEAGE_TOPIC = "openlineage-events"
"""OpenLineage run events as JSON, keyed by run id."""

SPANS_TOPIC = "otel-spans"
"""OTLP protobuf `ExportTraceServiceRequest`s, keyed by trace id."""

METRICS_TOPIC = "otel-metrics"
"""OTLP protobuf `ExportMetricsServiceRequest`s, keyed by service name."""

PARTITIONS = 3
"""Partitions of every topic (the DLQs included)."""


def dlq(topic: str) -> str:
    """The dead-letter topic beside `topic`."""
    return f"{topic}.dlq"


MAIN_TOPICS: tuple[str, ...] = (LINEAGE_TOPIC, SPANS_TOPIC, METRICS_TOPIC)
ALL_TOPICS: tuple[str, ...] = MAIN_TOPICS + tuple(dlq(t) for t in MAIN_TOPICS)
