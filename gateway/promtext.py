"""The gateway's own metrics, rendered as Prometheus text (exposition format 0.0.4).

Hand-written counters and histograms with labels: a few dozen series, one lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

LabelValues = tuple[str, ...]

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()

    def inc(self, *values: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + amount

    def value(self, *values: str) -> float:
        with self._lock:
            return self._values.get(values, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for values, v in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(self.label_names, values)} {_fmt(v)}")
        return lines


class Histogram:
    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelValues, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *values: str) -> None:
        with self._lock:
            counts, totals = self._series.setdefault(values, ([0] * len(self.buckets), [0.0, 0]))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            totals[0] += value
            totals[1] += 1

    def count(self, *values: str) -> int:
        with self._lock:
            series = self._series.get(values)
            return int(series[1][1]) if series else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for values, (counts, (total, n)) in sorted(self._series.items()):
                for bound, c in zip(self.buckets, counts, strict=True):
                    le = f'le="{_fmt(bound)}"'
                    lines.append(f"{self.name}_bucket{_labels(self.label_names, values, le)} {c}")
                inf = 'le="+Inf"'
                lines.append(
                    f"{self.name}_bucket{_labels(self.label_names, values, inf)} {_fmt(n)}"
                )
                lines.append(f"{self.name}_sum{_labels(self.label_names, values)} {_fmt(total)}")
                lines.append(f"{self.name}_count{_labels(self.label_names, values)} {_fmt(n)}")
        return lines


class GatewayMetrics:
    def __init__(self) -> None:
        self.requests = Counter(
            "lineagehub_gateway_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
        )
        self.latency = Histogram(
            "lineagehub_gateway_http_request_duration_seconds",
            "Time from the request's arrival to the end of the response, by route template.",
            ("method", "route"),
        )
        self.events = Counter(
            "lineagehub_gateway_lineage_events_total",
            "OpenLineage events by outcome: accepted, invalid, too_large, unavailable.",
            ("result",),
        )
        self.publish = Histogram(
            "lineagehub_gateway_kafka_publish_seconds",
            "Time from publishing an event until Kafka acknowledged it.",
        )
        self.rejected = Counter(
            "lineagehub_gateway_rejected_total",
            "Requests refused before the handler: unauthenticated, forbidden, rate_limited.",
            ("reason",),
        )
        self.runs_created = Counter(
            "lineagehub_gateway_pipelineruns_created_total", "PipelineRuns created over HTTP."
        )

        self.runs_replayed = Counter(
            "lineagehub_gateway_pipelineruns_replayed_total",
            "Creates answered with the run an Idempotency-Key already created.",
        )
        self.health_probe_runs = Counter(
            "lineagehub_gateway_health_probe_runs_total",
            "Runs of the dependency probes behind /api/v1/health (at most one per interval).",
        )

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.requests,
            self.latency,
            self.events,
            self.publish,
            self.rejected,
            self.runs_created,
            self.runs_replayed,
            self.health_probe_runs,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
