"""The operator's own Prometheus metrics (prometheus_client), served on their own port
(`lineage-hub operator --metrics-port`), beside kopf's liveness endpoint.

* `lineagehub_operator_reconcile_seconds` (histogram): one pass of a run's reconcile
  loop, from reading the run to the status written and the next wait decided.
* `lineagehub_operator_queued_runs` (gauge): runs held Pending by an active-run limit.
* `lineagehub_operator_store_checks_total` (counter): finished runs looked up in the
  stores (Marquez, ClickHouse, Jaeger), one per check of a run, all stores together.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# The other services' scrapes have no `_created` series either.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILE_SECONDS = Histogram(
    "lineagehub_operator_reconcile_seconds",
    "One pass of a PipelineRun's reconcile loop (read, decide, act, write status).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
QUEUED_RUNS = Gauge(
    "lineagehub_operator_queued_runs",
    "PipelineRuns waiting Pending (reason Queued) for an active-run limit to free a slot.",
    registry=REGISTRY,
)

STORE_CHECKS = Counter(
    "lineagehub_operator_store_checks",
    "Checks of a finished run's records in the stores (each asks every configured store).",
    registry=REGISTRY,
)


def serve(host: str, port: int) -> None:
    """`/metrics` on `host:port` from a daemon thread (prometheus_client's server)."""
    start_http_server(port, addr=host, registry=REGISTRY)
