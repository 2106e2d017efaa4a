"""Spans whose ids we choose, encoded as OTLP protobuf for the `otel-spans` topic.

The operator's root span lives across operator restarts: its trace and span
ids are persisted in the PipelineRun's `status.traceparent`, and the span is
exported once, when the run ends, with its real start time. The SDK cannot
export a span with given ids, so we write the OTLP message directly. A stage
process records its spans the same way, without the SDK: the protobuf modules
are loaded by `encode`, after the stage's work, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from lineagehub import tracecontext

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SCOPE = "lineagehub"
#: On a PipelineRun: the W3C traceparent of the call that created it (the gateway puts
#: it there); the run's root span continues that trace as a child of that span.
RUN_TRACEPARENT_ANNOTATION = "lineagehub.io/traceparent"


def parse_traceparent(traceparent: str) -> tuple[str, str]:
    """(trace id, span id) as lowercase hex from a W3C traceparent."""
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        raise ValueError(f"not a W3C traceparent: {traceparent!r}")
    return parts[1], parts[2]


def caller_context(annotations: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(trace id, span id) of the call that created a run, from its annotation; None
    when there is none or it is not a valid W3C traceparent: the run then starts a
    trace of its own."""
    caller = tracecontext.parse_traceparent((annotations or {}).get(RUN_TRACEPARENT_ANNOTATION))
    return None if caller is None else (caller.trace_hex, caller.span_hex)


#: A span or event attribute: a scalar, or a list of them (OTLP's ArrayValue).
AttributeValue = str | int | float | bool | Sequence[str | int | float | bool]
Attributes = Mapping[str, AttributeValue]

#: OTLP's SpanKind INTERNAL (`Span.SPAN_KIND_INTERNAL`), without loading the protobuf.
SPAN_KIND_INTERNAL = 1


def _value(v: AttributeValue) -> AnyValue:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue

    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    return AnyValue(array_value=ArrayValue(values=[_value(x) for x in v]))


def attributes_proto(attrs: Attributes) -> list[KeyValue]:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items()]


def _nanos(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000_000)


@dataclass
class SpanEvent:
    """An event on a span (an exception: name `exception`, OTel's exception.* keys)."""

    name: str
    time_unix_nano: int
    attributes: Attributes = field(default_factory=dict)


@dataclass
class FixedSpan:
    """A finished span. `ok` None leaves its status unset (what a span that recorded no
    verdict of its own says), True is OK, False is ERROR with `message`. `start` and
    `end` are datetimes, or `start_ns`/`end_ns` (Unix nanoseconds) when set, which a
    stage's spans use (a datetime holds microseconds only)."""

    name: str
    trace_id: str
    span_id: str
    start: datetime | None
    end: datetime | None
    parent_span_id: str = ""
    ok: bool | None = True
    message: str = ""
    kind: int = SPAN_KIND_INTERNAL
    attributes: Attributes = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    start_ns: int | None = None
    end_ns: int | None = None

    def start_unix_nano(self) -> int:
        return self.start_ns if self.start_ns is not None else _nanos(_given(self.start))

    def end_unix_nano(self) -> int:
        return self.end_ns if self.end_ns is not None else _nanos(_given(self.end))


def _given(t: datetime | None) -> datetime:
    if t is None:
        raise ValueError("a span needs a start and an end (datetime or Unix nanoseconds)")
    return t


def encode(
    spans: list[FixedSpan],
    service: str,
    resource: Mapping[str, str] | None = None,
    scope: str = SCOPE,
) -> bytes:
    """One ExportTraceServiceRequest (the `otlp_proto` Kafka encoding) for `spans`,
    recorded by the instrumentation scope `scope`."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    def status(s: FixedSpan) -> Status:
        if s.ok is None:
            return Status(code=Status.STATUS_CODE_UNSET)
        if s.ok:
            return Status(code=Status.STATUS_CODE_OK, message=s.message)
        return Status(code=Status.STATUS_CODE_ERROR, message=s.message)

    proto_spans = [
        Span(
            trace_id=bytes.fromhex(s.trace_id),
            span_id=bytes.fromhex(s.span_id),
            parent_span_id=bytes.fromhex(s.parent_span_id) if s.parent_span_id else b"",
            name=s.name,
            kind=s.kind,  # type: ignore[arg-type]
            start_time_unix_nano=s.start_unix_nano(),
            end_time_unix_nano=s.end_unix_nano(),
            attributes=attributes_proto(s.attributes),
            events=[
                Span.Event(
                    name=e.name,
                    time_unix_nano=e.time_unix_nano,
                    attributes=attributes_proto(e.attributes),
                )
                for e in s.events
            ],
            status=status(s),
        )
        for s in spans
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=attributes_proto({"service.name": service, **(resource or {})})
                ),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope), spans=proto_spans)],
            )
        ]
    )
    return request.SerializeToString()
