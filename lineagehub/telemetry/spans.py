"""Spans whose ids we choose, encoded as OTLP protobuf for the `otel-spans` topic.

The operator's root span lives across operator restarts: its trace and span
ids are persisted in the PipelineRun's `status.traceparent`, and the span is
exported once, when the run ends, with its real start time. The SDK cannot
export a span with given ids, so we write the OTLP message directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SCOPE = "lineagehub"
#: On a PipelineRun: the W3C traceparent of the call that created it (the gateway puts
#: it there); the run's root span continues that trace as a child of that span.
RUN_TRACEPARENT_ANNOTATION = "lineagehub.io/traceparent"
_CALLER = re.compile(r"00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}")


def parse_traceparent(traceparent: str) -> tuple[str, str]:
    """(trace id, span id) as lowercase hex from a W3C traceparent."""
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        raise ValueError(f"not a W3C traceparent: {traceparent!r}")
    return parts[1], parts[2]


def caller_context(annotations: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(trace id, span id) of the call that created a run, from its annotation; None
    when there is none or it is not a valid version-00 traceparent (all-zero ids are
    invalid per W3C): the run then starts a trace of its own."""
    match = _CALLER.fullmatch((annotations or {}).get(RUN_TRACEPARENT_ANNOTATION, "").strip())
    if match is None or set(match["trace"]) == {"0"} or set(match["span"]) == {"0"}:
        return None
    return match["trace"], match["span"]


def _value(v: str | int | float | bool) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def _attrs(attrs: Mapping[str, str | int | float | bool]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items()]


def _nanos(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000_000)


@dataclass
class FixedSpan:
    name: str
    trace_id: str
    span_id: str
    start: datetime
    end: datetime
    parent_span_id: str = ""
    ok: bool = True
    message: str = ""
    kind: int = Span.SPAN_KIND_INTERNAL
    attributes: dict[str, str | int | float | bool] = field(default_factory=dict)


def encode(
    spans: list[FixedSpan], service: str, resource: Mapping[str, str] | None = None
) -> bytes:
    """One ExportTraceServiceRequest (the `otlp_proto` Kafka encoding) for `spans`."""
    proto_spans = [
        Span(
            trace_id=bytes.fromhex(s.trace_id),
            span_id=bytes.fromhex(s.span_id),
            parent_span_id=bytes.fromhex(s.parent_span_id) if s.parent_span_id else b"",
            name=s.name,
            kind=s.kind,  # type: ignore[arg-type]
            start_time_unix_nano=_nanos(s.start),
            end_time_unix_nano=_nanos(s.end),
            attributes=_attrs(s.attributes),
            status=Status(
                code=Status.STATUS_CODE_OK if s.ok else Status.STATUS_CODE_ERROR,
                message=s.message,
            ),
        )
        for s in spans
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=_attrs({"service.name": service, **(resource or {})})),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name=SCOPE), spans=proto_spans)],
            )
        ]
    )
    return request.SerializeToString()
