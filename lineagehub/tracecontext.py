"""W3C Trace Context (`traceparent`, `tracestate`): parsed, formatted and turned into an
OpenTelemetry parent context, in one place for the gateway (HTTP headers), the
consumers (Kafka record headers) and the operator (the run's annotation).

The rules are the recommendation's (https://www.w3.org/TR/trace-context/):
`version-traceid-parentid-flags`, lowercase hex only; version `ff` is invalid; an
all-zero trace id or parent id is invalid; version `00` is exactly 55 characters,
while a later version may append fields after a `-`, and its first four are read as
version 00's. Surrounding blanks (HTTP's optional whitespace) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # OpenTelemetry is loaded on first use: a stage process never needs it
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanContext

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_LENGTH = 55  # 2 + 1 + 32 + 1 + 16 + 1 + 2
_HEX = frozenset("0123456789abcdef")
#: Header names as HTTP (ASGI: lowercase bytes) and Kafka (str) give them.
_NAMES: dict[str | bytes, str] = {
    TRACEPARENT: TRACEPARENT,
    TRACESTATE: TRACESTATE,
    TRACEPARENT.encode(): TRACEPARENT,
    TRACESTATE.encode(): TRACESTATE,
}


class TraceParent(NamedTuple):
    """A valid `traceparent`: ids as integers, as OpenTelemetry holds them. (A tuple: a
    consumer parses one per traced record, and a frozen dataclass costs ~1 us more.)"""

    trace_id: int
    span_id: int
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def trace_hex(self) -> str:
        return format(self.trace_id, "032x")

    @property
    def span_hex(self) -> str:
        return format(self.span_id, "016x")

    def header(self) -> str:
        """The version-00 header value."""
        return format_traceparent(self.trace_id, self.span_id, self.flags)


def _hex(text: str) -> bool:
    return _HEX.issuperset(text)


#: Version 00 exactly, as our gateway and most callers write it: one match, no loops.
_VERSION_00 = re.compile(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
#: Every flags field's value, by its two hex digits.
_FLAGS = {format(n, "02x").encode(): n for n in range(256)}
#: A `TraceParent` made without its Python-level `__new__` (a consumer makes one per
#: traced record; the fields are checked before).
_new_tuple = tuple.__new__


def parse_traceparent(value: str | bytes | None) -> TraceParent | None:
    """The traceparent `value` holds, or None when it is absent or not valid."""
    if isinstance(value, bytes) and _VERSION_00.fullmatch(value) is not None:
        trace_id, span_id = int(value[3:35], 16), int(value[36:52], 16)
        if not (trace_id and span_id):
            return None
        return _new_tuple(TraceParent, (trace_id, span_id, _FLAGS[value[53:55]]))
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not value:
        return None
    value = value.strip(" \t")
    version = value[:2]
    if len(value) < _LENGTH or not _hex(version) or version == "ff":
        return None
    if len(value) > _LENGTH and (version == "00" or value[_LENGTH] != "-"):
        return None
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    trace, span, flags = value[3:35], value[36:52], value[53:55]
    if not (_hex(trace) and _hex(span) and _hex(flags)):
        return None
    parsed = TraceParent(int(trace, 16), int(span, 16), int(flags, 16))
    if parsed.trace_id == 0 or parsed.span_id == 0:
        return None
    return parsed


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """A version-00 `traceparent` header value."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def record_headers(traceparent: str, tracestate: str = "") -> list[tuple[str, bytes]]:
    """Kafka record headers carrying a trace context (what `context_headers` reads
    back): `traceparent`, and `tracestate` when there is one."""
    headers = [(TRACEPARENT, traceparent.encode())]
    if tracestate:
        headers.append((TRACESTATE, tracestate.encode()))
    return headers


def log_ids(trace_id: int, span_id: int) -> dict[str, str]:
    """`trace_id` (32 hex) and `span_id` (16 hex) as a log line carries them, as Jaeger
    and the `otel_traces` table write them."""
    return {"trace_id": f"{trace_id:032x}", "span_id": f"{span_id:016x}"}


def span_context_header(context: SpanContext) -> str:
    """The `traceparent` naming `context` (a span of ours, to be a remote parent)."""
    return format_traceparent(context.trace_id, context.span_id, context.trace_flags)


def parent_context(traceparent: TraceParent, tracestate: str | None = None) -> Context:
    """An OpenTelemetry context whose current span is the remote parent `traceparent`
    names, for `tracer.start_span(context=...)`. A malformed `tracestate` is dropped, as
    the recommendation asks, without dropping the parent."""
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    state = TraceState.from_header([tracestate]) if tracestate else None
    span_context = SpanContext(
        trace_id=traceparent.trace_id,
        span_id=traceparent.span_id,
        is_remote=True,
        trace_flags=TraceFlags(traceparent.flags),
        trace_state=state,
    )
    return set_span_in_context(NonRecordingSpan(span_context))


def context_headers(
    headers: Iterable[tuple[str | bytes, object]] | None,
) -> tuple[str | bytes | None, str | bytes | None]:
    """The values of the last `traceparent` and the last `tracestate` among `headers`
    (name, value) pairs, HTTP headers as ASGI gives them (lowercase byte names) or Kafka
    record headers (str names, bytes values), unparsed; None for one that is absent. A
    pair whose value is neither bytes nor text is passed over."""
    parent: str | bytes | None = None
    state: str | bytes | None = None
    for name, value in headers or ():
        known = _NAMES.get(name)
        if known is None or not isinstance(value, bytes | str):
            continue
        if known == TRACEPARENT:
            parent = value
        else:
            state = value
    return parent, state


def headers_trace(
    headers: Iterable[tuple[str | bytes, object]] | None,
) -> tuple[TraceParent, str | None] | None:
    """The valid `traceparent` among `headers` (`context_headers`) and the `tracestate`
    beside it; None without a valid `traceparent`."""
    return values_trace(*context_headers(headers))


def values_trace(
    parent: str | bytes | None, state: str | bytes | None
) -> tuple[TraceParent, str | None] | None:
    """A `traceparent` value parsed and the `tracestate` value beside it as text; None
    when the `traceparent` is absent or not valid."""
    traceparent = parse_traceparent(parent)  # bytes as they are: its quick path takes them
    if traceparent is None:
        return None
    return traceparent, state.decode("latin-1") if isinstance(state, bytes) else state


def headers_context(headers: Iterable[tuple[str | bytes, object]] | None) -> Context | None:
    """The parent context carried by `headers` (`headers_trace`). None without a valid
    `traceparent`: the caller starts no child of it."""
    found = headers_trace(headers)
    return None if found is None else parent_context(*found)


def trace_state_text(tracestate: str | None) -> str:
    """`tracestate` as the SDK carries it onto a child span and exports it: its valid
    members, `key=value` joined by commas; empty when none (a malformed header is
    dropped whole, as the recommendation asks)."""
    if not tracestate:
        return ""
    from opentelemetry.trace.span import TraceState

    return ",".join(f"{k}={v}" for k, v in TraceState.from_header([tracestate]).items())
