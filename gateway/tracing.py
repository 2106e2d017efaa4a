"""The gateway's own spans: one server span per request, started and ended by the
gateway's one request middleware (`gateway.observed`), recorded without the
OpenTelemetry SDK's span machinery, and the request span's context handed on to what a
request creates (a PipelineRun, Kafka records).

Why not the FastAPI/ASGI instrumentation package: it collects some twenty attributes
per request (host, URL, user agent, every header decoded), resolves the route by
matching the path against every route again, and wraps each ASGI message; measured on
`POST /api/v1/lineage` that more than doubled the app's CPU per request. Here the
sampler decides before any attribute is gathered; the route template is the one the
router matched (`RouteTemplates`), read after the handler ran.

Why not the SDK's spans: a sampled request cost ~55 us in them (span and context
objects, the sampler's result, a lock per attribute call, the processor's end hook).
For the SDK's own samplers (always on/off, the trace-id ratio, parent-based ones of
them) the decision is the sampler's rule applied here (`RootSampling`), and a kept
request's span is an `OtlpSpan` made current as a `StoreSpan` (as a consumer's store
span), handed when it ends to the provider's span processors as the SDK's finished
span (`otlp_spans.readable`): same name, attributes, ids, parent and trace state as
the SDK's span, exported as before and encoded by `otlp_spans`. A request without a
caller's context that is not sampled makes no span and leaves nothing current: its
log line carries no trace ids (no trace holds them) and its Kafka records no headers.
Any other sampler leaves every request to the SDK's tracer, as before.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from random import getrandbits

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from starlette.types import Scope

from gateway.metric_labels import UNMATCHED, method_label
from lineagehub.otlp_spans import KIND_SERVER, STATUS_UNSET, OtlpSpan, readable
from lineagehub.selftrace import (
    SelfTraceProvider,
    caller_decision,
    root_decision,
    root_ratio_bound,
)
from lineagehub.store_spans import FinishedSpans, StoreSpan
from lineagehub.tracecontext import (
    TRACEPARENT,
    TRACESTATE,
    TraceParent,
    headers_context,
    headers_trace,
    parse_traceparent,
    record_headers,
    span_context_header,
    trace_state_text,
)

#: Scrapes, probes and the console's files: frequent, and no one's trace.
EXCLUDED_PATHS = frozenset({"/metrics", "/healthz"})
EXCLUDED_PREFIXES = ("/console/static/", "/console/lib/")
TRACER_NAME = "lineagehub.gateway"
#: The trace-context request headers, as ASGI names them.
CONTEXT_HEADER_NAMES = frozenset({TRACEPARENT.encode(), TRACESTATE.encode()})
_NAME = operator.itemgetter(0)
#: W3C trace-context level 2's flag for a random trace id, which the SDK sets.
RANDOM_TRACE_ID = TraceFlags.RANDOM_TRACE_ID


def caller_context(headers: list[tuple[bytes, bytes]]) -> Context | None:
    """The caller's W3C trace context from the request headers; None when it sent no
    valid `traceparent` (the request's span then starts a trace of its own)."""
    return headers_context(headers)


class RootSampling:
    """The provider's sampling decisions made without the SDK: for a request without a
    caller's context, `draw()` draws its trace id (the provider's id generator) and
    returns it when the span is to be recorded, None when not; `follows` decides for a
    caller's context. None from `of` when the provider's sampler may decide on more
    than the trace id and the parent's flag (every request then goes to the SDK).

    With the SDK's own random id generator and a trace-id ratio sampler, which looks
    only at an id's low 64 bits, `draw` draws those bits first and the high ones only
    for a kept id: the ids and decisions are distributed exactly as the SDK's (128
    random bits, never 0), and a request not kept costs one draw of 64 bits."""

    def __init__(
        self,
        tracer: Tracer,
        keep: Callable[[int], bool],
        follows: Callable[[int, bool], bool],
        ratio_bound: int | None = None,
    ) -> None:
        self.keep = keep
        self.follows = follows
        self._new_id = tracer.id_generator.generate_trace_id
        self.new_span_id = tracer.id_generator.generate_span_id
        # The SDK flags a root's context when its generator draws random trace ids.
        random_ids = RANDOM_TRACE_ID if tracer.id_generator.is_trace_id_random() else 0
        self.root_flags = TraceFlags.SAMPLED | random_ids
        self.draw: Callable[[], int | None] = self._drawn
        if ratio_bound is not None and type(tracer.id_generator) is RandomIdGenerator:
            self.draw = functools.partial(_ratio_draw, ratio_bound)

    @classmethod
    def of(cls, tracer: object, provider: TracerProvider) -> RootSampling | None:
        keep = root_decision(provider.sampler)
        follows = caller_decision(provider.sampler)
        if not isinstance(tracer, Tracer) or keep is None or follows is None:
            return None
        return cls(tracer, keep, follows, root_ratio_bound(provider.sampler))

    def _drawn(self) -> int | None:
        trace_id = self._new_id()
        return trace_id if self.keep(trace_id) else None


def _ratio_draw(bound: int) -> int | None:
    """A trace id as `RandomIdGenerator` draws it, when a ratio sampler of `bound` keeps
    it (its low 64 bits under the bound); None, having drawn only those bits, when not."""
    low = getrandbits(64)
    if low >= bound:
        return None
    high = getrandbits(64)
    if not (high or low):  # the invalid id 0: the SDK draws again, then decides again
        return _ratio_draw(bound)
    return high << 64 | low


class ProcessorSpans:
    """Ended request spans to the provider's span processors, as the SDK's finished
    spans of the middleware's tracer (its resource and instrumentation scope): for a
    provider other than our `SelfTraceProvider` (whose batch threads take the spans
    as they are, without making SDK spans of them)."""

    def __init__(self, tracer: Tracer) -> None:
        self.processor = tracer.span_processor
        self.resource = tracer.resource
        self.scope = InstrumentationScope(TRACER_NAME, "")  # as get_tracer(TRACER_NAME) has it

    def finish(self, span: OtlpSpan) -> None:
        self.processor.on_end(readable(span, self.resource, self.scope))


class OpenRequest:
    """A request's tracing while it runs: the context it attached (detached at its end)
    and its recording span, None when the request is not recorded (a caller's context
    the sampler drops: a non-recording span is current, for the log line's ids)."""

    __slots__ = ("span", "token")

    def __init__(self, token: Token[Context], span: trace.Span | None) -> None:
        self.token = token
        self.span = span

    def end(
        self,
        scope: Scope,
        method: str,
        route: str,
        status: int,
        error: BaseException | None,
    ) -> None:
        """Records the request's outcome on its span, ends it and detaches its context.
        `method`: as the request gave it; `route`: its template (`RouteTemplates`);
        `status`: the response's, 0 when none started; `error`: what left the app.
        A cancellation (the client left, the server stopping) chose no answer, so none
        is invented: the span says it was cancelled, not that it failed. Any other
        exception fails it, also after the response started (an SSE stream that breaks
        mid-way: the 200 already sent does not make the request a success)."""
        span = self.span
        try:
            if span is None:
                return
            cancelled = isinstance(error, asyncio.CancelledError)
            method = method_label(method)
            attributes: dict[str, str | int] = {
                "http.request.method": method,
                "url.path": scope["path"],
            }
            if cancelled:
                attributes["error.type"] = "cancelled"
            elif error is not None:
                span.record_exception(error)
                status = status or 500
            if route != UNMATCHED:
                attributes["http.route"] = route
                span.update_name(f"{method} {route}")
            if status:
                attributes["http.response.status_code"] = status
            span.set_attributes(attributes)  # one call: each takes the SDK span's lock
            if status >= 500 or (not cancelled and (error is not None or not status)):
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            otel_context.detach(self.token)


class RequestSpans:
    """The gateway's SERVER span per request, a child of the caller's `traceparent`,
    named `METHOD /route/template`, current while the request runs (so the access log
    line and the Kafka records name it). Not an ASGI layer of its own: the one request
    middleware (`gateway.observed.ObservedRequests`) calls `start`, then the request's
    `OpenRequest.end`, so a
    request pays for one layer, one `send` wrapper and one route lookup.

    Attributes (recorded spans only): `http.request.method`, `url.path`, `http.route`,
    `http.response.status_code`; a 5xx or an exception sets the span's status to error.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer(TRACER_NAME)
        self.roots = RootSampling.of(self.tracer, provider)
        self.finished: FinishedSpans | None = None
        if isinstance(provider, SelfTraceProvider):
            self.finished = provider.otlp_batcher(TRACER_NAME)
        elif isinstance(self.tracer, Tracer):
            self.finished = ProcessorSpans(self.tracer)

    def start(self, scope: Scope) -> OpenRequest | None:
        """The request's span started and made current; None when nothing is (the
        scrape, the probe, a request without a caller's context that is not sampled)."""
        path = scope["path"]
        if path in EXCLUDED_PATHS or path.startswith(EXCLUDED_PREFIXES):
            return None
        roots, finished = self.roots, self.finished
        if roots is None or finished is None:
            return self._sdk_start(scope)
        headers = scope["headers"]
        # Most requests carry no context: no parsing for them (the names compared in C).
        caller = (
            None if CONTEXT_HEADER_NAMES.isdisjoint(map(_NAME, headers)) else headers_trace(headers)
        )
        if caller is None:
            trace_id = roots.draw()
            if trace_id is None:
                return None  # not sampled: no span, nothing current
            span = _span(scope, trace_id, 0, roots.new_span_id(), roots.root_flags, "")
        else:
            parent, state = caller
            if not roots.follows(parent.trace_id, parent.sampled):
                return self._unsampled_child(parent, state, roots)
            flags = TraceFlags.SAMPLED | parent.flags & RANDOM_TRACE_ID
            span = _span(
                scope,
                parent.trace_id,
                parent.span_id,
                roots.new_span_id(),
                flags,
                trace_state_text(state),
            )
        live = StoreSpan(finished, span, _context(span))
        return OpenRequest(otel_context.attach(trace.set_span_in_context(live)), live)

    @staticmethod
    def _unsampled_child(
        parent: TraceParent, state: str | None, roots: RootSampling
    ) -> OpenRequest:
        """A caller's context the sampler drops: as the SDK, a non-recording span with
        its own id in the caller's trace is current (log lines name it; records carry
        no headers, the context being unsampled)."""
        text = trace_state_text(state)
        context = SpanContext(
            parent.trace_id,
            roots.new_span_id(),
            False,
            TraceFlags(parent.flags & RANDOM_TRACE_ID),
            TraceState.from_header([text]) if text else None,
        )
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(context)))
        return OpenRequest(token, None)

    def _sdk_start(self, scope: Scope) -> OpenRequest:
        """A request under a sampler only the SDK can apply: the SDK's span."""
        parent = caller_context(scope["headers"])
        # The sampler decides inside start_span, before any attribute is gathered; an
        # unsampled request gets the SDK's non-recording span (ids only) and nothing more.
        span = self.tracer.start_span(
            method_label(scope["method"]), context=parent, kind=SpanKind.SERVER
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return OpenRequest(token, span if span.is_recording() else None)


def _span(
    scope: Scope, trace_id: int, parent_id: int, span_id: int, flags: int, state: str
) -> OtlpSpan:
    now = time.time_ns()
    # Positional, in OtlpSpan's order (cheaper than by name, once a traced request).
    return OtlpSpan(
        method_label(scope["method"]),
        trace_id,
        span_id,
        parent_id,
        now,
        now,
        KIND_SERVER,
        {},
        [],
        STATUS_UNSET,
        "",
        state,
        bool(parent_id),
        flags,
    )


def _context(span: OtlpSpan) -> SpanContext:
    state = TraceState.from_header([span.trace_state]) if span.trace_state else None
    return SpanContext(span.trace_id, span.span_id, False, TraceFlags(span.trace_flags), state)


def current_context_carrier() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span; empty without one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    carrier = {TRACEPARENT: span_context_header(context)}
    if context.trace_state:
        carrier[TRACESTATE] = context.trace_state.to_header()
    return carrier


def run_traceparent(headers: Mapping[str, str]) -> str | None:
    """The trace context a created PipelineRun continues: the gateway's request span
    when it is traced, else the caller's own `traceparent` when it is well formed."""
    if trace.get_current_span().is_recording():
        return current_context_carrier().get(TRACEPARENT)
    caller = parse_traceparent(headers.get(TRACEPARENT))
    return None if caller is None else caller.header()


class _LastHeaders:
    """The last sampled SDK span context (a sampler only the SDK applies) and its record
    headers: a batch request asks once a record, all for the same span (its context
    object, held here, cannot be reused). Our own spans keep theirs (`StoreSpan`)."""

    context: SpanContext | None = None
    headers: list[tuple[str, bytes]] = []


def kafka_headers() -> list[tuple[str, bytes]]:
    """Record headers carrying the current span's context when it is sampled, so a
    consumer's span for the record is a child of the span that produced it. Empty
    otherwise: a consumer makes no span for a record without a sampled context, so the
    headers would be bytes on every record for nothing. The list is shared by the
    records of one span: not to be changed."""
    span = trace.get_current_span()
    if type(span) is StoreSpan:  # the request's own span (recorded: sampled)
        return span.record_headers()
    context = span.get_span_context()
    if not context.trace_flags.sampled:
        return []
    if _LastHeaders.context is context:
        return _LastHeaders.headers
    state = context.trace_state.to_header() if context.trace_state else ""
    headers = record_headers(span_context_header(context), state)
    _LastHeaders.context, _LastHeaders.headers = context, headers
    return headers
