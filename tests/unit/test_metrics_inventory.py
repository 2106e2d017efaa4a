"""Every metric a scraper may already use keeps its name, type and labels.

The inventory below was read off the hand-written renderers this library
replaced (gateway/promtext.py and consumers/stats.py before prometheus_client):
each series each code path can produce, with its label names. The same tests
passed against those renderers before the switch.
"""

from __future__ import annotations

from lineagehub_operator import metrics
from prometheus_client import generate_latest

from consumers.stats import Stats
from gateway.promtext import GatewayMetrics
from tests.promparse import Shape, shapes

_REQ = frozenset({"method", "route", "status"})
_ROUTE = frozenset({"method", "route"})
_NONE: frozenset[str] = frozenset()


def _histogram(name: str, labels: frozenset[str]) -> set[Shape]:
    return {("histogram", f"{name}_{part}", labels) for part in ("bucket", "sum", "count")}


GATEWAY: set[Shape] = {
    ("counter", "lineagehub_gateway_http_requests_total", _REQ),
    ("counter", "lineagehub_gateway_lineage_events_total", frozenset({"result"})),
    ("counter", "lineagehub_gateway_rejected_total", frozenset({"reason"})),
    ("counter", "lineagehub_gateway_pipelineruns_created_total", _NONE),
    ("counter", "lineagehub_gateway_pipelineruns_replayed_total", _NONE),
    ("counter", "lineagehub_gateway_health_probe_runs_total", _NONE),
    *_histogram("lineagehub_gateway_http_request_duration_seconds", _ROUTE),
    *_histogram("lineagehub_gateway_kafka_publish_seconds", _NONE),
}

CONSUMER: set[Shape] = {
    ("counter", "lineagehub_consumer_processed_total", frozenset({"consumer", "topic"})),
    ("counter", "lineagehub_consumer_retried_total", frozenset({"consumer", "cause"})),
    (
        "counter",
        "lineagehub_consumer_dead_lettered_total",
        frozenset({"consumer", "topic", "reason"}),
    ),
    ("counter", "lineagehub_consumer_inserted_rows_total", frozenset({"consumer", "table"})),
    ("counter", "lineagehub_consumer_posted_total", frozenset({"consumer", "event_type"})),
    ("counter", "lineagehub_consumer_batches_total", frozenset({"consumer", "topic"})),
    ("gauge", "lineagehub_consumer_lag", frozenset({"consumer", "topic", "partition"})),
    # Added beside the earlier series (no rename): how long a store of a topic takes.
    *_histogram("lineagehub_consumer_store_seconds", frozenset({"consumer", "topic"})),
}


def gateway_scrape() -> str:
    """The gateway's /metrics text once every metric has a value."""
    metrics = GatewayMetrics()
    metrics.requests.labels("POST", "/api/v1/lineage", "201").inc()
    metrics.latency.labels("POST", "/api/v1/lineage").observe(0.003)
    metrics.events.labels("accepted").inc()
    metrics.publish.observe(0.002)
    metrics.rejected.labels("forbidden").inc()
    metrics.runs_created.inc()
    metrics.runs_replayed.inc()
    metrics.health_probe_runs.inc()
    return metrics.render()


def consumer_scrape() -> str:
    """A consumer's /metrics text once every metric has a value."""
    stats = Stats("otel")
    stats.inc("processed", 3, topic="otel-spans")
    stats.inc("retried", cause="network")
    stats.inc("dead_lettered", topic="otel-spans", reason="decode")
    stats.inc("inserted_rows", 10, table="otel_traces")
    stats.inc("posted", event_type="RunEvent")
    stats.inc("batches", topic="otel-spans")
    stats.set_lag("otel-spans", 0, 7)
    stats.stored("otel-spans", 0.02)
    return stats.prometheus()


def operator_scrape(queued: int = 3) -> str:
    """The operator's /metrics text after a reconcile pass, `queued` runs waiting."""
    metrics.RECONCILE_SECONDS.observe(0.02)
    metrics.QUEUED_RUNS.set(queued)
    metrics.STORE_CHECKS.inc()
    return generate_latest(metrics.REGISTRY).decode()


def test_the_gateway_keeps_every_series_name_type_and_label_set() -> None:
    assert shapes(gateway_scrape()) == GATEWAY


def test_the_consumers_keep_every_series_name_type_and_label_set() -> None:
    assert shapes(consumer_scrape()) == CONSUMER


def test_the_operator_exports_reconcile_latency_queue_depth_and_store_checks() -> None:
    text = operator_scrape(3)
    assert shapes(text) == {
        *_histogram("lineagehub_operator_reconcile_seconds", _NONE),
        ("gauge", "lineagehub_operator_queued_runs", _NONE),
        ("counter", "lineagehub_operator_store_checks_total", _NONE),
    }
    assert "lineagehub_operator_queued_runs 3.0" in text.splitlines()
