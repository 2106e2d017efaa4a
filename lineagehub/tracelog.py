"""The current span's ids for a log line, so a line leads to its trace."""

from __future__ import annotations

from opentelemetry import trace

from lineagehub.store_spans import StoreSpan
from lineagehub.tracecontext import log_ids


def current_span_ids() -> dict[str, str]:
    """`trace_id` (32 hex) and `span_id` (16 hex) of the span current in this context,
    as Jaeger and the `otel_traces` table write them; empty when no span is recording
    or was propagated here. (Shared when the span is a `StoreSpan`: not to be changed.)"""
    span = trace.get_current_span()
    if type(span) is StoreSpan:  # ours (a request or store span): its ids made once
        return span.log_ids()
    context = span.get_span_context()
    if not context.is_valid:
        return {}
    return log_ids(context.trace_id, context.span_id)
