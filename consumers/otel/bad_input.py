"""A mixed stream of OTLP records, mostly good, some malformed the ways real bad input
is (for the mixed-stream test and bench): truncated protobuf, ids of the wrong length
or all zero, unknown fields, a field of the wrong wire type, text that is not UTF-8,
times past 2262, a metric without a name.

Each record says what the consumer must do with it: store its rows (`reason` None) or
dead-letter it once with `reason`. Good records are told apart by a key unique to each
(the trace id of a span request, the run id of a metric request).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from consumers.samples import metrics_request, run_trace
from lineagehub.otlp_spans import varint

# Field 99, a varint: no OTLP message defines it.
UNKNOWN_FIELD = b"\x98\x06\x01"


@dataclass(frozen=True)
class Sent:
    key: bytes  # the record's Kafka key: unique in the stream
    value: bytes
    reason: str | None  # the dead-letter reason it must get; None: it is stored
    rows: int  # rows it stores (spans, or data points), 0 when it is refused


def _len_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _truncated(raw: bytes) -> bytes:
    """Cut inside the last byte of the outermost message: a length-delimited field then
    claims more bytes than there are, which no parser accepts."""
    return raw[:-1]


def _bad_spans(request: ExportTraceServiceRequest, how: str) -> tuple[bytes, str]:
    spans = request.resource_spans[0].scope_spans[0].spans
    if how == "truncated":
        return _truncated(request.SerializeToString()), "decode"
    if how == "zero_trace_id":
        spans[-1].trace_id = bytes(16)
        return request.SerializeToString(), "invalid_span"
    if how == "short_span_id":
        spans[0].span_id = spans[0].span_id[:7]
        return request.SerializeToString(), "invalid_span"
    if how == "unknown_field":
        spans[-1].MergeFromString(UNKNOWN_FIELD)
        return request.SerializeToString(), "decode"
    if how == "wrong_type":
        # `resource_spans` (a message) sent as a varint after the real ones.
        return request.SerializeToString() + b"\x08\x01", "decode"
    if how == "not_utf8":
        name = b"\xff\xfe"
        scope = _len_field(2, _len_field(2, _len_field(5, name)))  # a Span named 0xfffe
        return request.SerializeToString() + _len_field(1, scope), "decode"
    raise ValueError(how)


def _bad_metrics(request: ExportMetricsServiceRequest, how: str) -> tuple[bytes, str]:
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    if how == "truncated":
        return _truncated(request.SerializeToString()), "decode"
    if how == "no_name":
        metrics[1].name = ""
        return request.SerializeToString(), "invalid_metric"
    if how == "late_time":
        metrics[0].gauge.data_points[0].time_unix_nano = 2**64 - 1
        return request.SerializeToString(), "invalid_metric"
    if how == "unknown_field":
        metrics[2].MergeFromString(UNKNOWN_FIELD)
        return request.SerializeToString(), "decode"
    if how == "wrong_type":
        return request.SerializeToString() + b"\x08\x01", "decode"
    if how == "not_utf8":
        scope = _len_field(2, _len_field(1, b"\xff\xfe"))  # a Metric named 0xfffe
        return request.SerializeToString() + _len_field(1, scope), "decode"
    raise ValueError(how)


SPAN_FAULTS = ["truncated", "zero_trace_id", "short_span_id", "unknown_field", "wrong_type"]
SPAN_FAULTS.append("not_utf8")
METRIC_FAULTS = ["truncated", "no_name", "late_time", "unknown_field", "wrong_type", "not_utf8"]


def _mixed(
    n: int,
    share: float,
    seed: int,
    good: Callable[[str], tuple[bytes, int]],
    bad: Callable[[str, str], tuple[bytes, str]],
    faults: list[str],
) -> list[Sent]:
    rng = random.Random(seed)
    every = max(1, round(1 / share)) if share else 0
    out = []
    for i in range(n):
        key = f"{seed}-{i}-{rng.getrandbits(64):016x}"
        if every and i % every == every - 1:
            value, reason = bad(key, faults[(i // every) % len(faults)])
            out.append(Sent(key.encode(), value, reason, 0))
        else:
            value, rows = good(key)
            out.append(Sent(key.encode(), value, None, rows))
    return out


def mixed_spans(n: int, share: float = 0.01, seed: int = 0, children: int = 2) -> list[Sent]:
    """`n` span requests (`run_trace`, its run id the key), one in `1 / share` malformed,
    each fault in turn."""

    def good(key: str) -> tuple[bytes, int]:
        request = run_trace(key, children=children)
        return request.SerializeToString(), len(request.resource_spans[0].scope_spans[0].spans)

    def bad(key: str, how: str) -> tuple[bytes, str]:
        return _bad_spans(run_trace(key, children=children), how)

    return _mixed(n, share, seed, good, bad, SPAN_FAULTS)


def _sample_metrics(run_id: str) -> ExportMetricsServiceRequest:
    return metrics_request(run_id=run_id)


def mixed_metrics(
    n: int,
    share: float = 0.01,
    seed: int = 0,
    build: Callable[[str], ExportMetricsServiceRequest] = _sample_metrics,
) -> list[Sent]:
    """`n` metric requests (`build(key)`, by default `metrics_request`: a gauge, a sum and
    a histogram point, the key its run id), one in `1 / share` malformed, each fault in
    turn. A `build` of its own must start with those three metrics, in that order."""

    def good(key: str) -> tuple[bytes, int]:
        request = build(key)
        points = sum(
            len(getattr(m, m.WhichOneof("data") or "").data_points)
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )
        return request.SerializeToString(), points

    def bad(key: str, how: str) -> tuple[bytes, str]:
        return _bad_metrics(build(key), how)

    return _mixed(n, share, seed, good, bad, METRIC_FAULTS)
