"""Spans recorded without the OpenTelemetry SDK, and their OTLP encodings.

Creating a span in the SDK and encoding it with the SDK's OTLP encoder costs a service
~140 µs of CPU; a consumer storing a record costs about as much. So the spans a service
makes per record (a consumer's store spans) are recorded as plain `OtlpSpan`s and
encoded here straight into the protobuf wire format of an `ExportTraceServiceRequest`
(the `otel-spans` topic's value): the bytes the official message classes parse, field
for field what the SDK's encoder writes for the same span (a unit test compares the
two). For a collector (`LINEAGEHUB_OTLP_DIRECT=1`) the spans are handed to the SDK's
OTLP exporters as finished SDK spans (`readable`), which encode and send them with
their `OTEL_EXPORTER_OTLP_*` settings; a stage's spans (`FixedSpan`) take that path
too (`export_fixed_spans`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lineagehub.telemetry.spans import AttributeValue, FixedSpan

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

#: OTLP's SpanKind values.
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 1, 2, 3, 4, 5
#: OTLP's StatusCode values.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
#: Span.flags: the parent's is-remote bit is known (the SDK always sets it), and set.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200

Attributes = Mapping[str, AttributeValue]


@dataclass(slots=True)
class OtlpEvent:
    name: str
    time_unix_nano: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(slots=True)
class OtlpSpan:
    """A finished span, ids as integers (as W3C trace context and the SDK hold them);
    `parent_span_id` 0 for a root span."""

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int
    start_unix_nano: int
    end_unix_nano: int
    kind: int = KIND_INTERNAL
    attributes: Attributes = field(default_factory=dict)
    events: list[OtlpEvent] = field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    trace_state: str = ""
    parent_is_remote: bool = False
    #: The W3C flags of the span's own context (sampled, random trace id): OTLP does
    #: not carry them, the SDK's finished span (`readable`) does.
    trace_flags: int = 0x01


# ---- protobuf wire format -------------------------------------------------------------


_BYTE = [bytes((i,)) for i in range(256)]


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 takes ten bytes, as on the wire."""
    if 0 <= n < 0x80:
        return _BYTE[n]
    if 0 < n < 0x4000:  # two bytes: a span's length, most often
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """A field's key: its number and wire type, as a varint."""
    return varint(number << 3 | wire_type)


#: Length-delimited field tags, by field number (every message here numbers below 16).
_LEN_TAG = [tag(n, 2) for n in range(16)]


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, message)."""
    size = len(payload)
    return _LEN_TAG[number] + (_BYTE[size] if size < 0x80 else varint(size)) + payload


def text_field(number: int, text: str) -> bytes:
    return len_field(number, text.encode()) if text else b""


def _fixed64(number: int, value: int) -> bytes:
    return tag(number, 1) + struct.pack("<Q", value)


def any_value(v: AttributeValue) -> bytes:
    """An `AnyValue` message's bytes."""
    if isinstance(v, bool):
        return tag(2, 0) + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return tag(3, 0) + varint(v)
    if isinstance(v, float):
        return tag(4, 1) + struct.pack("<d", v)
    if isinstance(v, str):
        return len_field(1, v.encode())
    return len_field(5, b"".join(len_field(1, any_value(x)) for x in v))  # ArrayValue


def key_value(key: str, value: AttributeValue) -> bytes:
    """A `KeyValue` message's bytes."""
    return len_field(1, key.encode()) + len_field(2, any_value(value))


@functools.lru_cache(maxsize=1024)
def _key_field(key: str) -> bytes:
    """A `KeyValue`'s key field: a service names few keys."""
    return len_field(1, key.encode())


def _scalar_field(number: int, key: str, value: str | int | float) -> bytes:
    """A `KeyValue` field of a scalar."""
    if type(value) is str:  # most values: no `any_value` dispatch
        return len_field(number, _key_field(key) + len_field(2, len_field(1, value.encode())))
    return len_field(number, _key_field(key) + len_field(2, any_value(value)))


#: Scalar `KeyValue` fields made so far, by (field number, key, value, value's type: True
#: and 1 compare equal): a service repeats its keys and most of their values. Emptied when
#: full rather than kept least-recently-used: values seen once (a record's offset) would
#: otherwise cost every span an eviction, and the repeated ones come back at once.
_SCALAR_FIELDS: dict[tuple[int, str, object, type], bytes] = {}
_SCALAR_FIELDS_MAX = 4096


class SharedAttributes:
    """Attributes many spans carry alike (a consumer's store spans of one stored batch:
    the destination, the partition, the store), encoded once for all of them."""

    __slots__ = ("_encoded", "values")

    def __init__(self, values: Attributes) -> None:
        self.values = values
        self._encoded: dict[int, bytes] = {}

    def encoded(self, number: int) -> bytes:
        """The `KeyValue` fields of `values`, as field `number`."""
        found = self._encoded.get(number)
        if found is None:
            found = self._encoded[number] = _attributes(number, self.values)
        return found


class SpanAttributes(Mapping[str, AttributeValue]):
    """A span's attributes: the `shared` ones, then its `own` (no key in both), which
    the encoder writes as the shared encoding followed by the own attributes'."""

    __slots__ = ("own", "shared")

    def __init__(self, shared: SharedAttributes, own: Mapping[str, AttributeValue]) -> None:
        self.shared = shared
        self.own = own

    def __getitem__(self, key: str) -> AttributeValue:
        own = self.own
        return own[key] if key in own else self.shared.values[key]

    def __iter__(self) -> Iterator[str]:
        yield from self.shared.values
        yield from self.own

    def __len__(self) -> int:
        return len(self.shared.values) + len(self.own)


def _attributes(number: int, attributes: Attributes) -> bytes:
    if type(attributes) is SpanAttributes:
        return attributes.shared.encoded(number) + _attributes(number, attributes.own)
    made = _SCALAR_FIELDS
    out = []
    for k, v in attributes.items():
        kind = type(v)
        if kind not in _SCALARS:
            out.append(len_field(number, key_value(k, v)))
            continue
        found = made.get((number, k, v, kind))
        if found is None:
            found = _scalar_field(number, k, v)  # type: ignore[arg-type]
            if len(made) >= _SCALAR_FIELDS_MAX:
                made.clear()
            made[number, k, v, kind] = found
        out.append(found)
    return b"".join(out)


_SCALARS = frozenset({str, int, float, bool})


#: A span's fixed-size fields, each packed with its tag (and length) in one call: trace id
#: (16 bytes, as two big-endian halves) and span id (8), with the parent's span id (8)
#: when the span has a parent and no trace state (field 3, between them); the parent's
#: span id alone; start and end (fixed64); flags (fixed32).
_IDS = struct.Struct(">2sQQ2sQ")
_IDS_AND_PARENT = struct.Struct(">2sQQ2sQ2sQ")
_TRACE_ID, _SPAN_ID = tag(1, 2) + b"\x10", tag(2, 2) + b"\x08"
_PARENT_ID = struct.Struct(">2sQ")
_PARENT_ID_TAG = tag(4, 2) + b"\x08"
_TIMES = struct.Struct("<cQcQ")
_START, _END = tag(7, 1), tag(8, 1)  # one byte each
_KIND, _FLAGS = tag(6, 0), tag(16, 5)
_LOW_64 = (1 << 64) - 1
_REMOTE_FLAGS = {
    remote: _FLAGS + struct.pack("<I", _HAS_IS_REMOTE | (_IS_REMOTE if remote else 0))
    for remote in (False, True)
}
#: The status of most spans: UNSET, no message (an empty `Status` message, still written).
_UNSET_STATUS = len_field(15, b"")
#: What ends most spans (no events, status unset), by whether the parent is remote.
_UNSET_ENDS = {remote: _UNSET_STATUS + flags for remote, flags in _REMOTE_FLAGS.items()}
#: `ScopeSpans.spans`' tag.
_SPANS_TAG = _LEN_TAG[2]


@functools.lru_cache(maxsize=256)
def _name_and_kind(name: str, kind: int) -> bytes:
    return text_field(5, name) + _KIND + varint(kind)


def _span_fields(s: OtlpSpan) -> bytes:
    """A `Span` message's fields (its bytes without the tag and length that make it a
    field of `ScopeSpans`)."""
    trace_id = s.trace_id
    if s.parent_span_id and not s.trace_state:  # a child span, most often: one pack
        ids = _IDS_AND_PARENT.pack(
            _TRACE_ID,
            trace_id >> 64,
            trace_id & _LOW_64,
            _SPAN_ID,
            s.span_id,
            _PARENT_ID_TAG,
            s.parent_span_id,
        )
    else:
        ids = _IDS.pack(_TRACE_ID, trace_id >> 64, trace_id & _LOW_64, _SPAN_ID, s.span_id)
        if s.trace_state:
            ids += text_field(3, s.trace_state)
        if s.parent_span_id:
            ids += _PARENT_ID.pack(_PARENT_ID_TAG, s.parent_span_id)
    head = (
        ids,
        _name_and_kind(s.name, s.kind),
        _TIMES.pack(_START, s.start_unix_nano, _END, s.end_unix_nano),
        _attributes(9, s.attributes),
    )
    if not (s.events or s.status_code or s.status_message):
        return b"".join((*head, _UNSET_ENDS[s.parent_is_remote]))
    parts = list(head)
    for e in s.events:
        event = _fixed64(1, e.time_unix_nano) + text_field(2, e.name) + _attributes(3, e.attributes)
        parts.append(len_field(11, event))
    if s.status_code or s.status_message:
        status = text_field(2, s.status_message)
        if s.status_code:
            status += tag(3, 0) + varint(s.status_code)
        parts.append(len_field(15, status))
    else:
        parts.append(_UNSET_STATUS)
    parts.append(_REMOTE_FLAGS[s.parent_is_remote])
    return b"".join(parts)


def encode_request(
    spans: Sequence[OtlpSpan], resource: Attributes, scope: str, scope_version: str = ""
) -> bytes:
    """One `ExportTraceServiceRequest` holding `spans`, all of one resource and one
    instrumentation scope."""
    resource_message = len_field(1, _attributes(1, resource))
    return len_field(1, resource_message + _scope_spans(spans, scope, scope_version))


def _scope_spans(spans: Sequence[OtlpSpan], scope: str, scope_version: str) -> bytes:
    """A `ResourceSpans.scope_spans` field: each span's fields go into the batch's bytes
    as they are, behind their tag and length (one copy, in the join)."""
    parts = [len_field(1, text_field(1, scope) + text_field(2, scope_version))]
    append = parts.append
    for s in spans:
        fields = _span_fields(s)
        size = len(fields)
        append(_SPANS_TAG + (_BYTE[size] if size < 0x80 else varint(size)))
        append(fields)
    return len_field(2, b"".join(parts))


# ---- the SDK's finished spans, for its OTLP exporters ---------------------------------


def readable(span: OtlpSpan, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """`span` as the SDK's finished span."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.span import TraceState

    state = TraceState.from_header([span.trace_state]) if span.trace_state else None
    sampled = TraceFlags(TraceFlags.SAMPLED)
    flags = sampled if span.trace_flags == sampled else TraceFlags(span.trace_flags)
    parent = None
    if span.parent_span_id:
        parent = SpanContext(
            span.trace_id, span.parent_span_id, is_remote=span.parent_is_remote, trace_flags=sampled
        )
    context = SpanContext(
        span.trace_id, span.span_id, is_remote=False, trace_flags=flags, trace_state=state
    )
    description = (span.status_message or None) if span.status_code == STATUS_ERROR else None
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=dict(span.attributes),
        events=[Event(e.name, dict(e.attributes), e.time_unix_nano) for e in span.events],
        kind=SpanKind(span.kind - 1),  # the SDK's enum counts from INTERNAL = 0
        status=Status(StatusCode(span.status_code), description),
        start_time=span.start_unix_nano,
        end_time=span.end_unix_nano,
        instrumentation_scope=scope,
    )


def from_fixed(span: FixedSpan) -> OtlpSpan:
    """A stage's or the operator's span (hex ids, `ok` verdict) as an `OtlpSpan`."""
    code = STATUS_UNSET if span.ok is None else STATUS_OK if span.ok else STATUS_ERROR
    return OtlpSpan(
        name=span.name,
        trace_id=int(span.trace_id, 16),
        span_id=int(span.span_id, 16),
        parent_span_id=int(span.parent_span_id, 16) if span.parent_span_id else 0,
        start_unix_nano=span.start_unix_nano(),
        end_unix_nano=span.end_unix_nano(),
        kind=span.kind,
        attributes=span.attributes,
        events=[OtlpEvent(e.name, e.time_unix_nano, e.attributes) for e in span.events],
        status_code=code,
        status_message=span.message if code == STATUS_ERROR else "",
        parent_is_remote=True,
    )


def export_fixed_spans(
    spans: Sequence[FixedSpan],
    resource: Mapping[str, str],
    scope: str,
    exporter: SpanExporter,
) -> None:
    """Export `spans` with `exporter` and shut it down (its own retries and timeout
    apply; a failure is logged by the exporter, never raised into the caller)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    res = Resource.create(dict(resource))
    instrumentation = InstrumentationScope(scope)
    try:
        exporter.export([readable(from_fixed(s), res, instrumentation) for s in spans])
    finally:
        exporter.shutdown()


def _from_readable(span: ReadableSpan) -> OtlpSpan:
    context, parent = span.get_span_context(), span.parent
    assert context is not None and span.start_time is not None and span.end_time is not None
    state = context.trace_state
    return OtlpSpan(
        name=span.name,
        trace_id=context.trace_id,
        span_id=context.span_id,
        parent_span_id=parent.span_id if parent is not None else 0,
        start_unix_nano=span.start_time,
        end_unix_nano=span.end_time,
        kind=span.kind.value + 1,  # the SDK's enum counts from INTERNAL = 0
        attributes=span.attributes or {},  # type: ignore[arg-type]
        events=[
            OtlpEvent(e.name, e.timestamp, e.attributes or {})  # type: ignore[arg-type]
            for e in span.events
        ],
        status_code=span.status.status_code.value,
        status_message=span.status.description or "",
        trace_state=",".join(f"{k}={v}" for k, v in state.items()) if state else "",
        parent_is_remote=parent is not None and parent.is_remote,
    )


def _plain_sdk_span(span: ReadableSpan) -> bool:
    """A span our encoder writes as the SDK's would: no links, nothing dropped, a scope
    with a name (and version) only."""
    scope = span.instrumentation_scope
    return (
        not span.links
        and not span.dropped_attributes
        and not span.dropped_events
        and not any(e.dropped_attributes for e in span.events)
        and scope is not None
        and not scope.schema_url
        and not scope.attributes
        and not span.resource.schema_url
    )


def encode_readable(spans: Sequence[ReadableSpan]) -> bytes:
    """An `ExportTraceServiceRequest` for the SDK's finished spans, as the SDK's encoder
    writes it (`encode_spans`) at a fraction of its cost; spans with parts our encoder
    leaves out (links, dropped counts, scope attributes) go through the SDK's."""
    if not all(_plain_sdk_span(s) for s in spans):
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        return encode_spans(spans).SerializeToString()
    groups: dict[tuple[Resource, InstrumentationScope], list[OtlpSpan]] = {}
    for span in spans:
        assert span.instrumentation_scope is not None
        key = (span.resource, span.instrumentation_scope)
        groups.setdefault(key, []).append(_from_readable(span))
    by_resource: dict[Resource, list[bytes]] = {}
    for (resource, scope), members in groups.items():
        by_resource.setdefault(resource, []).append(
            _scope_spans(members, scope.name, scope.version or "")
        )
    return b"".join(
        len_field(1, len_field(1, _attributes(1, resource.attributes)) + b"".join(scopes))  # type: ignore[arg-type]
        for resource, scopes in by_resource.items()
    )
