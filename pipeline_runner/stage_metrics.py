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
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from lineagehub.otlp_spans import len_field, tag, text_field, varint
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
    """One ExportMetricsServiceRequest (the `otel-metrics` Kafka value) for `m`, written
    straight in the protobuf wire format, byte for byte as the message classes would
    serialise it (importing them costs a stage ~50 ms of CPU, for seven numbers)."""
    from lineagehub.otlp_spans import key_value

    now = time.time_ns()
    pairs = [key_value(k, v) for k, v in m.attributes.items()]
    metrics = b""
    for instrument, value in m.recorded():
        if instrument.kind is Kind.HISTOGRAM:
            data = _histogram(value, m.start_ns, now, pairs)
        else:
            data = _number(instrument.kind, value, m.start_ns, now, pairs)
        metric = text_field(1, instrument.name) + text_field(2, instrument.description)
        metric += text_field(3, instrument.unit) + len_field(_DATA_FIELD[instrument.kind], data)
        metrics += len_field(2, metric)  # ScopeMetrics.metrics
    scope_metrics = len_field(1, text_field(1, scope)) + metrics
    resource_message = b"".join(len_field(1, key_value(k, v)) for k, v in resource.items())
    resource_metrics = len_field(1, resource_message) + len_field(2, scope_metrics)
    return len_field(1, resource_metrics)


#: A Metric's field for its data, by kind.
_DATA_FIELD = {Kind.GAUGE: 5, Kind.SUM: 7, Kind.HISTOGRAM: 9}
_CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _fixed64(number: int, value: int) -> bytes:
    """A fixed64 field (a timestamp, a count); zero is not written, as in proto3."""
    return tag(number, 1) + struct.pack("<Q", value) if value else b""


def _double(number: int, value: float) -> bytes:
    """A double field that is always written (a oneof member or an optional one)."""
    return tag(number, 1) + struct.pack("<d", value)


def _number(kind: Kind, value: int | float, start_ns: int, now: int, pairs: list[bytes]) -> bytes:
    """A Sum's or a Gauge's message: its one NumberDataPoint (a gauge's has no start
    time, as the SDK leaves it), and for a sum, cumulative and monotonic."""
    point = _fixed64(2, start_ns if kind is Kind.SUM else 0) + _fixed64(3, now)
    if isinstance(value, int):
        point += tag(6, 1) + struct.pack("<q", value)  # as_int, an sfixed64
    else:
        point += _double(4, value)
    point += b"".join(len_field(7, pair) for pair in pairs)
    data = len_field(1, point)
    if kind is Kind.SUM:
        data += tag(2, 0) + varint(_CUMULATIVE) + tag(3, 0) + b"\x01"
    return data


def _histogram(value: int | float, start_ns: int, now: int, pairs: list[bytes]) -> bytes:
    """A Histogram's message: one cumulative HistogramDataPoint of one value."""
    buckets = [0] * (len(HISTOGRAM_BOUNDS) + 1)
    buckets[bisect.bisect_left(HISTOGRAM_BOUNDS, value)] = 1
    number = float(value)
    point = _fixed64(2, start_ns) + _fixed64(3, now) + _fixed64(4, 1) + _double(5, number)
    point += len_field(6, struct.pack(f"<{len(buckets)}Q", *buckets))
    point += len_field(7, struct.pack(f"<{len(HISTOGRAM_BOUNDS)}d", *HISTOGRAM_BOUNDS))
    point += b"".join(len_field(9, pair) for pair in pairs)
    point += _double(11, number) + _double(12, number)  # min, max
    return len_field(1, point) + tag(2, 0) + varint(_CUMULATIVE)


__all__ = ["INSTRUMENTS", "Attributes", "Instrument", "Kind", "Measurements", "encode"]
