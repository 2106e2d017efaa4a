"""`screen`, the check a span or metric request passes alone before its batch decodes it,
routes every request as the two checks it replaced did (kept below, as they were, as
the reference): to its batch, to the row decoder (stored or refused for its reason), or
refused at once. Requests are built at the wire level, so they carry what the checks
look for: unknown fields at each level, fields given twice, defaults written out, two
members of a `oneof`, metrics without a name or data, empty levels, cut or flipped bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from google.protobuf.unknown_fields import UnknownFieldSet
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from consumers.otel.arrow_metrics import decode_metric_requests
from consumers.otel.arrow_spans import decode_trace_requests
from consumers.otel.columns import Pending, Rows
from consumers.otel.ddl import GAUGE, TRACES
from consumers.otel.decode import DecodeError, _parse, decode_metric_columns, decode_trace_columns
from tests.unit.test_otel_decode_fuzz import _field

Screen = Callable[[bytes | None], Mapping[str, Rows | Pending]]

# ---- the checks as they were ---------------------------------------------------------


def old_trace_screen(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    request = _parse(ExportTraceServiceRequest, raw, "ExportTraceServiceRequest")
    assert raw is not None
    spans = 0
    for resource_spans in request.resource_spans:
        if UnknownFieldSet(resource_spans):
            return decode_trace_columns(raw)
        for scope_spans in resource_spans.scope_spans:
            spans += len(scope_spans.spans)
            if any(UnknownFieldSet(span) for span in scope_spans.spans):
                return decode_trace_columns(raw)
    if not spans:
        raise DecodeError("empty", "ExportTraceServiceRequest carries no spans")
    if request.SerializeToString() != raw:
        return decode_trace_columns(raw)
    return {TRACES.name: Pending(raw, spans, lambda records: [])}


def old_metric_screen(raw: bytes | None) -> Mapping[str, Rows | Pending]:
    request = _parse(ExportMetricsServiceRequest, raw, "ExportMetricsServiceRequest")
    assert raw is not None
    points = 0
    for resource_metrics in request.resource_metrics:
        if UnknownFieldSet(resource_metrics):
            return decode_metric_columns(raw)
        for scope_metrics in resource_metrics.scope_metrics:
            if UnknownFieldSet(scope_metrics):
                return decode_metric_columns(raw)
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None or not metric.name or UnknownFieldSet(metric):
                    return decode_metric_columns(raw)
                points += len(getattr(metric, kind).data_points)
    if not points or request.SerializeToString() != raw:
        return decode_metric_columns(raw)
    return {GAUGE.name: Pending(raw, points, lambda records: [])}


# ---- requests at the wire level ------------------------------------------------------


UNKNOWN = bytes([0xB8, 0x3E, 7])  # field 999, varint 7: in no OTLP message
SPAN = trace_pb2.Span(
    trace_id=b"\1" * 16,
    span_id=b"\2" * 8,
    name="s",
    kind=trace_pb2.Span.SPAN_KIND_SERVER,
    start_time_unix_nano=5,
).SerializeToString()
# After a span's or metric's own fields: nothing, an unknown field, a field given again,
# a default written out (span kind 0; a metric's empty description).
SPAN_TAILS = [b"", b"", UNKNOWN, _field(5, b"again"), bytes([6 << 3, 0])]
METRIC_TAILS = [b"", b"", UNKNOWN, _field(1, b"again"), _field(2, b"")]


def _metrics() -> list[bytes]:
    gauge = metrics_pb2.Metric(name="g")
    gauge.gauge.data_points.add(as_int=1, time_unix_nano=5)
    total = metrics_pb2.Metric(name="s")
    total.sum.data_points.add(as_double=2.5, time_unix_nano=5)
    total.sum.data_points.add(as_int=3, time_unix_nano=6)
    no_points = metrics_pb2.Metric(name="e", gauge=metrics_pb2.Gauge())
    nameless = metrics_pb2.Metric()
    nameless.gauge.data_points.add(as_int=1)
    no_data = metrics_pb2.Metric(name="n")
    return [m.SerializeToString() for m in (gauge, gauge, total, no_points, nameless, no_data)] + [
        gauge.SerializeToString() + total.SerializeToString()
    ]  # a oneof given twice


METRICS = _metrics()


@st.composite
def requests(draw: st.DrawFn, leaf: st.SearchStrategy[bytes], scope_tails: list[bytes]) -> bytes:
    """request > resources > scopes > leaves, each level maybe with a tail, maybe cut
    or with a byte flipped."""
    resources = b""
    for _ in range(draw(st.integers(0, 2))):
        scopes = b""
        for _ in range(draw(st.integers(0, 2))):
            leaves = b"".join(_field(2, draw(leaf)) for _ in range(draw(st.integers(0, 3))))
            scopes += _field(2, leaves + draw(st.sampled_from(scope_tails)))
        tail = draw(st.sampled_from([b"", b"", UNKNOWN, _field(1, b"")]))
        resources += _field(1, scopes + tail)
    raw: bytes = resources + draw(st.sampled_from([b"", b"", b"", UNKNOWN]))
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "flip"]))
    if damage != "none" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] if damage == "cut" else raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :]
    return raw


span_leaves = st.builds(lambda tail: SPAN + tail, st.sampled_from(SPAN_TAILS))
metric_leaves = st.builds(
    lambda metric, tail: metric + tail, st.sampled_from(METRICS), st.sampled_from(METRIC_TAILS)
)


def outcome(screen: Screen, raw: bytes) -> tuple[object, ...]:
    """Where `screen` sends `raw`: its batch, the row decoder's rows, or a refusal."""
    try:
        tables = screen(raw)
    except DecodeError as exc:
        return ("refused", exc.reason, exc.detail)
    if any(isinstance(rows, Pending) for rows in tables.values()):
        return ("batch",)
    return ("rows", tuple(sorted((name, len(rows)) for name, rows in tables.items())))


@settings(max_examples=400, deadline=None)
@given(requests(span_leaves, [b"", b"", UNKNOWN]))
def test_span_requests_go_where_the_old_check_sent_them(raw: bytes) -> None:
    assert outcome(decode_trace_requests, raw) == outcome(old_trace_screen, raw)


@settings(max_examples=400, deadline=None)
@given(requests(metric_leaves, [b"", b"", UNKNOWN]))
def test_metric_requests_go_where_the_old_check_sent_them(raw: bytes) -> None:
    assert outcome(decode_metric_requests, raw) == outcome(old_metric_screen, raw)


def _routes(strategy: st.SearchStrategy[bytes], screen: Screen) -> set[str]:
    routes: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(strategy)
    def collect(raw: bytes) -> None:
        route = outcome(screen, raw)
        routes.add(str(route[0]) if route[0] != "refused" else f"refused:{route[1]}")

    collect()
    return routes


def test_the_requests_reach_every_route() -> None:
    """The strategies make requests of every outcome (else the properties prove little)."""
    spans = _routes(requests(span_leaves, [b"", UNKNOWN]), old_trace_screen)
    metrics = _routes(requests(metric_leaves, [b"", UNKNOWN]), old_metric_screen)
    for routes in (spans, metrics):
        assert {"batch", "rows", "refused:decode", "refused:empty"} <= routes, routes
    assert "refused:invalid_metric" in metrics
