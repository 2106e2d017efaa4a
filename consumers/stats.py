"""The consumers' own counters: processed, retried, dead-lettered, inserted, lag; and
how long storing takes (a histogram per topic).

One `Stats` object is the source of truth. It feeds the Prometheus text at
`/metrics` (rendered by prometheus_client) and mirrors every increment into
OpenTelemetry instruments (no-ops unless the process installed a MeterProvider),
so the numbers agree everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

Labels = tuple[tuple[str, str], ...]

COUNTERS: dict[str, str] = {
    "processed": "Messages fully handled (stored, inserted or dead-lettered) and committed.",
    "retried": "Retries of a transient failure (Marquez or ClickHouse unavailable).",
    "dead_lettered": "Messages sent to the dead-letter topic.",
    "inserted_rows": "Rows inserted into ClickHouse tables.",
    "posted": "OpenLineage events Marquez accepted.",
    "batches": "Batches flushed to ClickHouse.",
}
PREFIX = "lineagehub_consumer"
# Scrapers had no `_created` series from these families; the histogram adds none either.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
#: Seconds to store one batch (ClickHouse) or one event (Marquez), retries included.
STORE_SECONDS = "store_seconds"
STORE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# Label sets remembered per `Stats` with their series key (a consumer counts every event:
# sorting and copying its labels each time cost more than the count). Values come from
# a few topics, event types, causes and reasons; past the bound keys are built each time.
_REMEMBERED_LABEL_SETS = 1024


def _labels(values: Mapping[str, str | int]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in values.items()))


@dataclass
class Stats:
    """Thread-safe counters and gauges with labels."""

    consumer: str
    counters: dict[tuple[str, Labels], float] = field(default_factory=dict)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # (name, *labels as given) -> (series key, OpenTelemetry attributes)
    _keys: dict[tuple[object, ...], tuple[tuple[str, Labels], dict[str, str]]] = field(
        default_factory=dict, repr=False
    )
    # `get`'s (name, *labels as given) -> (how many series there were, the keys it sums)
    _queries: dict[tuple[object, ...], tuple[int, list[tuple[str, Labels]]]] = field(
        default_factory=dict, repr=False
    )
    # topic -> (the histogram's series, OpenTelemetry attributes)
    _stores: dict[str, tuple[Any, dict[str, str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        meter = otel_metrics.get_meter("lineagehub.consumers")
        self._otel = {
            name: meter.create_counter(f"{PREFIX}.{name}", description=text)
            for name, text in COUNTERS.items()
        }
        self._store = Histogram(
            f"{PREFIX}_{STORE_SECONDS}",
            "Seconds to store one batch (ClickHouse) or one event (Marquez), retries included.",
            ("consumer", "topic"),
            buckets=STORE_BUCKETS,
            registry=None,  # rendered with this object's counters, in `prometheus`
        )
        self._otel_store = meter.create_histogram(
            f"{PREFIX}.{STORE_SECONDS}", unit="s", description="Seconds to store a batch or event."
        )
        meter.create_observable_gauge(
            f"{PREFIX}.lag",
            callbacks=[self._observe_lag],
            description="Messages between the committed offset and the end of the partition.",
        )

    def inc(self, name: str, amount: float = 1, **labels: str | int) -> None:
        given = (name, *labels.items())
        found = self._keys.get(given)
        if found is None:
            if name not in COUNTERS:
                raise KeyError(name)
            key = (name, _labels({"consumer": self.consumer, **labels}))
            found = (key, dict(key[1]))
            if len(self._keys) < _REMEMBERED_LABEL_SETS:
                self._keys[given] = found
        key, attributes = found
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + amount
        self._otel[name].add(amount, attributes)

    def stored(self, topic: str, seconds: float) -> None:
        """One store (a batch, or a Marquez event) of `topic` took `seconds`."""
        found = self._stores.get(topic)
        if found is None:
            series = self._store.labels(self.consumer, topic)
            found = (series, {"consumer": self.consumer, "topic": topic})
            if len(self._stores) < _REMEMBERED_LABEL_SETS:
                self._stores[topic] = found
        series, attributes = found
        series.observe(seconds)
        self._otel_store.record(seconds, attributes)

    def get(self, name: str, **labels: str | int) -> float:
        """Sum of `name` over every label set that includes `labels` (`get("dead_lettered")`
        counts every topic and reason).

        Which series a query sums is remembered while no series is added (series are
        never removed, so an unchanged count means unchanged keys): a caller polling a
        count (the benches, tests waiting for progress) looks up its few series instead
        of testing every series' labels each call, and `inc` pays nothing for it."""
        query = (name, *labels.items())  # as given, as `inc`'s keys: no sort per call
        with self._lock:
            found = self._queries.get(query)
            if found is None or found[0] != len(self.counters):
                want = set(_labels(labels))
                keys = [k for k in self.counters if k[0] == name and want <= set(k[1])]
                found = (len(self.counters), keys)
                if len(self._queries) < _REMEMBERED_LABEL_SETS:
                    self._queries[query] = found
            counters = self.counters
            return sum(counters[k] for k in found[1])

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        with self._lock:
            self.lag[(topic, partition)] = max(lag, 0)

    def drop_lag(self, topic: str, partition: int) -> None:
        with self._lock:
            self.lag.pop((topic, partition), None)

    def total_lag(self) -> int:
        with self._lock:
            return sum(self.lag.values())

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self.lag.items())
        for (topic, partition), lag in items:
            yield Observation(
                lag, {"consumer": self.consumer, "topic": topic, "partition": str(partition)}
            )

    def prometheus(self) -> str:
        """The counters and lag in the Prometheus text exposition format (0.0.4)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        registry.register(self._store)
        return generate_latest(registry).decode()

    def snapshot(self) -> tuple[dict[tuple[str, Labels], float], dict[tuple[str, int], int]]:
        with self._lock:
            return dict(self.counters), dict(self.lag)


class _Collector(Collector):
    """The `Stats` as metric families: a counter's series may carry different label
    names (a table for inserted rows, a topic and a reason for dead letters), which the
    library's fixed-label instruments cannot express, so the families are built here
    and prometheus_client renders them."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        counters, lag = self.stats.snapshot()
        for name, text in COUNTERS.items():
            family = Metric(f"{PREFIX}_{name}", text, "counter")
            for (n, labels), value in sorted(counters.items()):
                if n == name:
                    family.add_sample(f"{PREFIX}_{name}_total", dict(labels), value)
            yield family
        gauge = Metric(
            f"{PREFIX}_lag", "Messages between the committed offset and the end.", "gauge"
        )
        for (topic, partition), value in sorted(lag.items()):
            series = {"consumer": self.stats.consumer, "topic": topic, "partition": str(partition)}
            gauge.add_sample(f"{PREFIX}_lag", series, value)
        yield gauge
