"""A stage's spans sent straight to an OTLP collector (`LINEAGEHUB_OTLP_DIRECT=1`).

The stage records its spans without the OpenTelemetry SDK; only when they also go to
a collector are they handed, finished, to the SDK's OTLP exporter (HTTP or gRPC, and
its `OTEL_EXPORTER_OTLP_*` settings), once, before the stage exits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from lineagehub.telemetry.spans import FixedSpan


def _context(trace_id: str, span_id: str, *, remote: bool) -> SpanContext:
    return SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def readable(span: FixedSpan, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """`span` as the SDK's finished span."""
    parent = (
        _context(span.trace_id, span.parent_span_id, remote=True) if span.parent_span_id else None
    )
    if span.ok is None:
        status = Status(StatusCode.UNSET)
    elif span.ok:
        status = Status(StatusCode.OK)
    else:
        status = Status(StatusCode.ERROR, span.message)
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id, remote=False),
        parent=parent,
        resource=resource,
        attributes=dict(span.attributes),
        events=[Event(e.name, dict(e.attributes), e.time_unix_nano) for e in span.events],
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=span.start_unix_nano(),
        end_time=span.end_unix_nano(),
        instrumentation_scope=scope,
    )


def export_spans(
    spans: Sequence[FixedSpan],
    resource: Mapping[str, str],
    scope: str,
    exporter: SpanExporter,
) -> None:
    """Export `spans` with `exporter` and shut it down (its own retries and timeout
    apply; a failure is logged by the exporter, never raised into the stage)."""
    res = Resource.create(dict(resource))
    instrumentation = InstrumentationScope(scope)
    try:
        exporter.export([readable(s, res, instrumentation) for s in spans])
    finally:
        exporter.shutdown()
