"""The gateway's own metrics, kept and rendered by prometheus_client.

One process: the values live in this object's registry. Several worker processes
(`lineage-hub gateway --workers N`): prometheus_client's multiprocess mode, switched on
by PROMETHEUS_MULTIPROC_DIR in the environment before the workers import the library,
keeps each worker's values in files in that directory, and the /metrics of any worker
adds them all up, so a scrape that reaches any worker sees the same totals.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gateway.metric_labels import method_label, status_label

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The hand-written renderer never had `_created` series; scrapers are not handed new ones.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class RequestChildren:
    """The request counter's and latency histogram's children for a request, each label
    set looked up once (`.labels()` checks its values and takes a lock each time, ~4% of
    a small request's CPU). Keyed by the labels, each from a closed set (a method not
    standard is `other`, a status not HTTP's `other`), so the dict stays small."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def get(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        key = (method_label(method), route, status_label(status))
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self._metrics.requests.labels(*key),
                self._metrics.latency.labels(key[0], route),
            )
        return found


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, when it is on."""
    return os.environ.get(MULTIPROC_ENV) or None


class GatewayMetrics:
    """The gateway's counters and histograms, in a registry of their own (each app built
    in a test process gets fresh values)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lineagehub_gateway_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "lineagehub_gateway_http_request_duration_seconds",
            "Time from the request's arrival to the end of the response, by route template.",
            ("method", "route"),
            buckets=DEFAULT_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "lineagehub_gateway_lineage_events_total",
            "OpenLineage events by outcome: accepted, invalid, too_large, unavailable.",
            ("result",),
            registry=r,
        )
        self.publish = Histogram(
            "lineagehub_gateway_kafka_publish_seconds",
            "Time from publishing an event until Kafka acknowledged it.",
            buckets=DEFAULT_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "lineagehub_gateway_rejected_total",
            "Requests refused before the handler: unauthenticated, forbidden, rate_limited.",
            ("reason",),
            registry=r,
        )
        self.runs_created = Counter(
            "lineagehub_gateway_pipelineruns_created_total",
            "PipelineRuns created over HTTP.",
            registry=r,
        )
        self.runs_replayed = Counter(
            "lineagehub_gateway_pipelineruns_replayed_total",
            "Creates answered with the run an Idempotency-Key already created.",
            registry=r,
        )
        self.health_probe_runs = Counter(
            "lineagehub_gateway_health_probe_runs_total",
            "Runs of the dependency probes behind /api/v1/health (at most one per interval).",
            registry=r,
        )

    def render(self) -> str:
        """Prometheus text (0.0.4): this process's values, or every worker's summed."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry).decode()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path)  # type: ignore[no-untyped-call]
        return generate_latest(merged).decode()


def worker_exited(pid: int) -> None:
    """Multiprocess bookkeeping when a worker stops (its live gauges' files go)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def shared_by_workers() -> Iterator[str]:
    """PROMETHEUS_MULTIPROC_DIR for the workers about to start (they inherit it): the
    directory the environment names, emptied of a previous start's files (they would add
    a dead start's counts to this one's), or a fresh temporary one, removed at the end."""
    given = multiprocess_dir()
    if given is not None:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield str(path)
        return
    path = Path(tempfile.mkdtemp(prefix="lineagehub-gateway-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield str(path)
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
