"""`screen`, the check a span or metric request passes alone before its batch decodes it,
and the batch decoder after it, give every request exactly what the row decoder (the
full check) gives it: its rows, or its refusal and reason; and the screen sends to its
batch every request the checks it replaced did (kept below, as they were, as the
reference). Requests are built at the wire level, so they carry what the checks look
for: unknown fields at each level and deeper (a span's status, an attribute, a data
point), fields given twice, defaults written out, two members of a `oneof`, metrics
without a name or data, empty levels, cut or flipped bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError as ProtobufError
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from consumers.otel.arrow_metrics import decode_metric_requests
from consumers.otel.arrow_spans import decode_trace_requests
from consumers.otel.columns import Pending, Rows
from consumers.otel.ddl import GAUGE, TRACES
from consumers.otel.decode import DecodeError, _parse, decode_metric_columns, decode_trace_columns
from tests.fuzz import fuzz_settings
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
# a default written out (span kind 0; a metric's empty description), an unknown field
# deeper down (in a span's status or an attribute; in a gauge point of a metric of its own).
SPAN_TAILS = [b"", b"", UNKNOWN, _field(5, b"again"), bytes([6 << 3, 0])]
DEEP_SPAN_TAILS = [_field(15, UNKNOWN), _field(9, _field(1, b"k") + UNKNOWN)]
SPAN_TAILS += DEEP_SPAN_TAILS
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
    odd_point = metrics_pb2.Metric(name="u")
    odd_point.gauge.data_points.add(as_int=1, time_unix_nano=5).MergeFromString(UNKNOWN)
    plain = (gauge, total, odd_point, odd_point, gauge, no_points, nameless, no_data)
    return [m.SerializeToString() for m in plain] + [
        gauge.SerializeToString() + total.SerializeToString()
    ]  # a oneof given twice


METRICS = _metrics()
SCOPE_TAILS = [b"", b"", UNKNOWN]


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


@st.composite
def plain_requests(draw: st.DrawFn, leaf: st.SearchStrategy[bytes]) -> bytes:
    """request > resources > scopes > leaves, every level there, in canonical form: the
    leaves decide where it goes (most to the batch)."""
    resources = b""
    for _ in range(draw(st.integers(1, 2))):
        scopes = b""
        for _ in range(draw(st.integers(1, 2))):
            scopes += _field(
                2, b"".join(_field(2, draw(leaf)) for _ in range(draw(st.integers(1, 3))))
            )
        resources += _field(1, scopes)
    return resources


span_leaves = st.builds(lambda tail: SPAN + tail, st.sampled_from(SPAN_TAILS))
metric_leaves = st.builds(
    lambda metric, tail: metric + tail, st.sampled_from(METRICS), st.sampled_from(METRIC_TAILS)
)
# Leaves the batch takes, some with an unknown field deeper down.
plain_span_leaves = st.sampled_from(
    [SPAN, SPAN, SPAN + UNKNOWN] + [SPAN + t for t in DEEP_SPAN_TAILS]
)
plain_metric_leaves = st.sampled_from(METRICS[:3])
span_requests = st.one_of(requests(span_leaves, SCOPE_TAILS), plain_requests(plain_span_leaves))
metric_requests = st.one_of(
    requests(metric_leaves, SCOPE_TAILS), plain_requests(plain_metric_leaves)
)


def has_unknown(message: Message) -> bool:
    """Whether `message` or any message inside it holds an unknown field (the full walk)."""
    if len(UnknownFieldSet(message)):
        return True
    for desc, value in message.ListFields():
        if desc.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        inner = value if desc.is_repeated else [value]
        if any(has_unknown(m) for m in inner):
            return True
    return False


def parsed(raw: bytes, cls: type[Message]) -> Message | None:
    try:
        return cls.FromString(raw)
    except ProtobufError:  # refused bytes hold no unknown field to look for
        return None


def settled(screen: Screen, raw: bytes) -> tuple[object, ...]:
    """What `raw` finally gets: `screen`'s rows or refusal, or for a request it leaves to
    its batch, what the batch decoder gives it in a batch of its own."""
    try:
        tables = screen(raw)
    except DecodeError as exc:
        return ("refused", exc.reason, exc.detail)
    for rows in tables.values():
        if isinstance(rows, Pending):
            (result,) = rows.batch([rows.raw])
            if isinstance(result, DecodeError):
                return ("refused", result.reason, result.detail)
            tables = result
            break
    return ("rows", tuple(sorted((name, len(r)) for name, r in tables.items() if len(r))))


def outcome(screen: Screen, raw: bytes) -> tuple[object, ...]:
    """Where `screen` sends `raw`: its batch, the row decoder's rows, or a refusal."""
    try:
        tables = screen(raw)
    except DecodeError as exc:
        return ("refused", exc.reason, exc.detail)
    if any(isinstance(rows, Pending) for rows in tables.values()):
        return ("batch",)
    return ("rows", tuple(sorted((name, len(rows)) for name, rows in tables.items())))


@fuzz_settings(400)
@given(span_requests)
@example(_field(1, _field(2, _field(2, SPAN + UNKNOWN))))  # a span's own unknown field
def test_span_requests_get_what_the_row_decoder_gives_them(raw: bytes) -> None:
    assert settled(decode_trace_requests, raw) == settled(decode_trace_columns, raw)
    if outcome(old_trace_screen, raw) == ("batch",):  # never slower than it was
        assert outcome(decode_trace_requests, raw) == ("batch",)


@fuzz_settings(400)
@given(metric_requests)
@example(_field(1, _field(2, _field(2, METRICS[0] + UNKNOWN))))  # a metric's own
def test_metric_requests_get_what_the_row_decoder_gives_them(raw: bytes) -> None:
    assert settled(decode_metric_requests, raw) == settled(decode_metric_columns, raw)
    if outcome(old_metric_screen, raw) == ("batch",):
        assert outcome(decode_metric_requests, raw) == ("batch",)


def _deep(value: AnyValue, levels: int) -> AnyValue:
    """`value` nested `levels` maps deep (three messages a level)."""
    for _ in range(levels):
        outer = AnyValue()
        outer.kvlist_value.values.add(key="k", value=value)
        value = outer
    return value


def test_an_unknown_field_after_the_deepest_nesting_protobuf_parses_is_still_found() -> None:
    """Past an attribute nested as deep as protobuf parses, a later span's unknown field
    is still found: the request is refused as the row decoder refuses it."""
    deepest = 0
    for levels in range(20, 40):
        request = ExportTraceServiceRequest()
        spans = request.resource_spans.add().scope_spans.add().spans
        first = spans.add(trace_id=b"\1" * 16, span_id=b"\2" * 8, name="deep")
        first.attributes.add(key="deep", value=_deep(AnyValue(string_value="x"), levels))
        spans.add().CopyFrom(trace_pb2.Span.FromString(SPAN + UNKNOWN))
        raw = request.SerializeToString()
        if parsed(raw, ExportTraceServiceRequest) is None:
            break
        deepest = levels
        assert settled(decode_trace_requests, raw) == settled(decode_trace_columns, raw)
        assert settled(decode_trace_requests, raw)[:2] == ("refused", "decode")
    assert deepest >= 25  # the loop reached protobuf's own nesting limit


def _routes(strategy: st.SearchStrategy[bytes], screen: Screen, cls: type[Message]) -> set[str]:
    routes: set[str] = set()

    @fuzz_settings(600)
    @given(strategy)
    def collect(raw: bytes) -> None:
        route = outcome(screen, raw)
        routes.add(str(route[0]) if route[0] != "refused" else f"refused:{route[1]}")
        message = parsed(raw, cls)
        if route == ("batch",) and message is not None and has_unknown(message):
            routes.add("batch, unknown fields")

    collect()
    return routes


def test_the_requests_reach_every_route() -> None:
    """The strategies make requests of every outcome (else the properties prove little),
    requests the old check sent to their batch with an unknown field among them."""
    spans = _routes(span_requests, old_trace_screen, ExportTraceServiceRequest)
    metrics = _routes(metric_requests, old_metric_screen, ExportMetricsServiceRequest)
    for routes in (spans, metrics):
        want = {"batch", "batch, unknown fields", "rows", "refused:decode", "refused:empty"}
        assert want <= routes, routes
    assert "refused:invalid_metric" in metrics
