"""The gateway's own spans: one server span per request from a lean ASGI middleware on
the OpenTelemetry SDK's tracer, and the request span's context handed on to what a
request creates (a PipelineRun, Kafka records).

Why not the FastAPI/ASGI instrumentation package: it collects some twenty attributes
per request (host, URL, user agent, every header decoded), resolves the route by
matching the path against every route again, and wraps each ASGI message; measured on
`POST /api/v1/lineage` that more than doubled the app's CPU per request. Here the
sampler decides before any attribute is gathered; the route template is the one the
router matched (`RouteTemplates`), read after the handler ran.

A request without a caller's context (almost all ingest) is decided before the SDK is
asked (`RootSampling`, the sampler's own rule on a trace id drawn here): the nine in
ten not sampled skip the SDK's span, span context, sampling result and context attach
(the middleware at one in ten: ~15 us a request before, ~5 us since, in process).
Such a request has no span current: its log line carries no trace ids (no trace holds
them) and its Kafka records no headers, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metric_labels import UNMATCHED, RouteTemplates, method_label
from lineagehub.tracecontext import (
    TRACEPARENT,
    TRACESTATE,
    headers_context,
    parse_traceparent,
    span_context_header,
)

#: Scrapes, probes and the console's files: frequent, and no one's trace.
EXCLUDED_PATHS = frozenset({"/metrics", "/healthz"})
EXCLUDED_PREFIXES = ("/console/static/", "/console/lib/")
TRACER_NAME = "lineagehub.gateway"


def traced_path(path: str) -> bool:
    """False for the scrape, the probe and the console's static files."""
    return path not in EXCLUDED_PATHS and not path.startswith(EXCLUDED_PREFIXES)


def caller_context(headers: list[tuple[bytes, bytes]]) -> Context | None:
    """The caller's W3C trace context from the request headers; None when it sent no
    valid `traceparent` (the request's span then starts a trace of its own)."""
    return headers_context(headers)


def root_decision(sampler: Sampler) -> Callable[[int], bool] | None:
    """Whether `sampler` records a span without a parent, as a function of its trace id,
    for the SDK's samplers that decide on the id alone (always on/off, the trace-id
    ratio, a parent-based one of them): the ratio's own bound compared, without the
    context reads and result object of `should_sample`. None for any other sampler."""
    if isinstance(sampler, ParentBased):
        return root_decision(sampler._root)  # the SDK keeps its root private
    if type(sampler) is TraceIdRatioBased:
        bound, limit = sampler.bound, TraceIdRatioBased.TRACE_ID_LIMIT
        return lambda trace_id: trace_id & limit < bound
    if type(sampler) is StaticSampler:
        keep = sampler.should_sample(Context(), 1, "").decision is not Decision.DROP
        return lambda trace_id: keep
    return None


class ChosenTraceIds(IdGenerator):
    """An id generator whose next trace id can be chosen: the one a root decision was
    made for, so the SDK's span has that id and its sampler (deterministic in the id)
    decides alike. Used by one tracer on one event loop: a choice is taken by the
    `start_span` right after it."""

    def __init__(self, ids: IdGenerator) -> None:
        self.ids = ids
        self.chosen: int | None = None

    def generate_trace_id(self) -> int:
        chosen, self.chosen = self.chosen, None
        return self.ids.generate_trace_id() if chosen is None else chosen

    def generate_span_id(self) -> int:
        return self.ids.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return self.ids.is_trace_id_random()


class RootSampling:
    """The provider's decision for a request that carries no caller context, made from
    a trace id drawn here, before the SDK is asked for a span: `draw()` returns the id
    when the span is to be recorded (the SDK's `start_span` then uses that id), None
    when it is not (nothing to make). None from `of` when the provider's sampler may
    decide otherwise than on the trace id alone (every request then goes to the SDK)."""

    def __init__(self, tracer: Tracer, keep: Callable[[int], bool]) -> None:
        self.ids = ChosenTraceIds(tracer.id_generator)
        tracer.id_generator = self.ids
        self.keep = keep
        self._new_id = self.ids.ids.generate_trace_id

    @classmethod
    def of(cls, tracer: object, provider: TracerProvider) -> RootSampling | None:
        keep = root_decision(provider.sampler)
        if not isinstance(tracer, Tracer) or keep is None:
            return None
        return cls(tracer, keep)

    def draw(self) -> int | None:
        trace_id = self._new_id()
        if not self.keep(trace_id):
            return None
        self.ids.chosen = trace_id
        return trace_id


class RequestTracing:
    """Outermost middleware: a SERVER span per request, a child of the caller's
    `traceparent`, named `METHOD /route/template`, current while every inner
    middleware and the handler run (so the access log line and Kafka headers name it).

    Attributes (recorded spans only): `http.request.method`, `url.path`, `http.route`,
    `http.response.status_code`; a 5xx or an exception sets the span's status to error.
    """

    def __init__(
        self, app: ASGIApp, provider: TracerProvider, routes: RouteTemplates | None = None
    ) -> None:
        self.app = app
        self.tracer = provider.get_tracer(TRACER_NAME)
        self.roots = RootSampling.of(self.tracer, provider)
        self.routes = routes or RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not traced_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        parent = caller_context(scope["headers"])
        if parent is None and self.roots is not None and self.roots.draw() is None:
            await self.app(scope, receive, send)  # not sampled: no span, nothing current
            return
        method = method_label(scope["method"])
        # The sampler decides inside start_span, before any attribute is gathered; an
        # unsampled request gets the SDK's non-recording span (ids only) and nothing more.
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        if not span.is_recording():
            try:
                await self.app(scope, receive, send)
            finally:
                otel_context.detach(token)
            return
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        failed = cancelled = False
        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:
            # The client left (or the server is stopping): no answer was chosen, so
            # none is invented; the span says it was cancelled, not that it failed.
            cancelled = True
            span.set_attribute("error.type", "cancelled")
            raise
        except BaseException as exc:
            # Also after the response started (an SSE stream that breaks mid-way):
            # the 200 already sent does not make the request a success.
            failed = True
            span.record_exception(exc)
            status = status or 500
            raise
        finally:
            attributes: dict[str, str | int] = {
                "http.request.method": method,
                "url.path": scope["path"],
            }
            route = self.routes.label(scope)
            if route != UNMATCHED:
                attributes["http.route"] = route
                span.update_name(f"{method} {route}")
            if status:
                attributes["http.response.status_code"] = status
            span.set_attributes(attributes)  # one call: each takes the span's lock
            if failed or status >= 500 or (not status and not cancelled):
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(token)


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
    """The last sampled span context and its record headers: a batch request asks once
    a record, all for the same span (its context object, held here, cannot be reused)."""

    context: SpanContext | None = None
    headers: list[tuple[str, bytes]] = []


def kafka_headers() -> list[tuple[str, bytes]]:
    """Record headers carrying the current span's context when it is sampled, so a
    consumer's span for the record is a child of the span that produced it. Empty
    otherwise: a consumer makes no span for a record without a sampled context, so the
    headers would be bytes on every record for nothing. The list is shared by the
    records of one span: not to be changed."""
    context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return []
    if _LastHeaders.context is context:
        return _LastHeaders.headers
    headers = [(TRACEPARENT, span_context_header(context).encode())]
    if context.trace_state:
        headers.append((TRACESTATE, context.trace_state.to_header().encode()))
    _LastHeaders.context, _LastHeaders.headers = context, headers
    return headers
