"""A stage's metrics: a handful of numbers recorded once, at the end of the stage, and
encoded as one OTLP `ExportMetricsServiceRequest` without the OpenTelemetry SDK (whose
metrics SDK and encoder cost a stage ~0.1 s of CPU for seven numbers).

The message says what the SDK's in-memory reader said for the same measurements:
cumulative monotonic sums, a histogram with the SDK's default explicit bounds, a
gauge, each with the stage's attributes, in the order the instruments are listed here.
With direct OTLP export the same measurements are replayed into the SDK
(`pipeline_runner.otlp_direct`).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from lineagehub.telemetry.spans import Attributes, AttributeValue


class Kind(Enum):
    SUM = "sum"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


@dataclass(frozen=True)
class Instrument:
    name: str
    kind: Kind
    unit: str
    description: str


ROWS_PROCESSED = Instrument("lineagehub.rows.processed", Kind.SUM, "{row}", "Rows a stage wrote")
ROWS_REJECTED = Instrument(
    "lineagehub.rows.rejected",
    Kind.SUM,
    "{row}",
    "Rows the transform dropped (filter, dropNulls, deduplicate)",
)
QUALITY_FAILED_ROWS = Instrument(
    "lineagehub.quality.failed_rows", Kind.SUM, "{row}", "Rows that failed a quality check"
)
DURATION = Instrument("lineagehub.stage.duration", Kind.HISTOGRAM, "s", "Duration of a stage")
BYTES_READ = Instrument("lineagehub.bytes.read", Kind.SUM, "By", "Bytes a stage read")
BYTES_WRITTEN = Instrument("lineagehub.bytes.written", Kind.SUM, "By", "Bytes a stage wrote")
PEAK_MEMORY = Instrument(
    "lineagehub.process.memory.peak",
    Kind.GAUGE,
    "By",
    "Peak resident memory of the stage process",
)
INSTRUMENTS = (
    ROWS_PROCESSED,
    ROWS_REJECTED,
    QUALITY_FAILED_ROWS,
    DURATION,
    BYTES_READ,
    BYTES_WRITTEN,
    PEAK_MEMORY,
)

#: The SDK's default explicit bucket bounds for a histogram.
HISTOGRAM_BOUNDS = (
    0.0,
    5.0,
    10.0,
    25.0,
    50.0,
    75.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    2500.0,
    5000.0,
    7500.0,
    10000.0,
)


@dataclass
class Measurements:
    """What a stage measured: at most one value per instrument, all with one set of
    attributes, since `start_ns` (when the stage's telemetry began)."""

    attributes: dict[str, AttributeValue]
    start_ns: int = field(default_factory=time.time_ns)
    values: dict[Instrument, int | float] = field(default_factory=dict)

    def put(self, instrument: Instrument, value: int | float) -> None:
        self.values[instrument] = value

    def recorded(self) -> list[tuple[Instrument, int | float]]:
        """(instrument, value) in the instruments' order."""
        return [(i, self.values[i]) for i in INSTRUMENTS if i in self.values]


def encode(m: Measurements, resource: Mapping[str, str], scope: str) -> bytes:
    """One ExportMetricsServiceRequest (the `otel-metrics` Kafka value) for `m`."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.metrics.v1.metrics_pb2 import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    from lineagehub.telemetry.spans import attributes_proto

    now = time.time_ns()
    attrs = attributes_proto(m.attributes)
    cumulative = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    metrics = []
    for instrument, value in m.recorded():
        metric = Metric(
            name=instrument.name, unit=instrument.unit, description=instrument.description
        )
        # A gauge's point is a value at one time: the SDK gives it no start time.
        number = (
            NumberDataPoint(
                attributes=attrs,
                start_time_unix_nano=m.start_ns if instrument.kind is Kind.SUM else 0,
                time_unix_nano=now,
            )
            if instrument.kind is not Kind.HISTOGRAM
            else None
        )
        if number is not None:
            if isinstance(value, int):
                number.as_int = value
            else:
                number.as_double = value
        if instrument.kind is Kind.SUM and number is not None:
            metric.sum.CopyFrom(
                Sum(data_points=[number], aggregation_temporality=cumulative, is_monotonic=True)
            )
        elif instrument.kind is Kind.GAUGE and number is not None:
            metric.gauge.CopyFrom(Gauge(data_points=[number]))
        else:
            buckets = [0] * (len(HISTOGRAM_BOUNDS) + 1)
            buckets[bisect.bisect_left(HISTOGRAM_BOUNDS, value)] = 1
            point = HistogramDataPoint(
                attributes=attrs,
                start_time_unix_nano=m.start_ns,
                time_unix_nano=now,
                count=1,
                sum=float(value),
                bucket_counts=buckets,
                explicit_bounds=HISTOGRAM_BOUNDS,
                min=float(value),
                max=float(value),
            )
            metric.histogram.CopyFrom(
                Histogram(data_points=[point], aggregation_temporality=cumulative)
            )
        metrics.append(metric)
    request = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(attributes=attributes_proto(resource)),
                scope_metrics=[
                    ScopeMetrics(scope=InstrumentationScope(name=scope), metrics=metrics)
                ],
            )
        ]
    )
    return request.SerializeToString()


__all__ = ["INSTRUMENTS", "Attributes", "Instrument", "Kind", "Measurements", "encode"]
