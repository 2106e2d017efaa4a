"""The gateway's own spans: one server span per request from a lean ASGI middleware on
the OpenTelemetry SDK's tracer, and the request span's context handed on to what a
request creates (a PipelineRun, Kafka records).

Why not the FastAPI/ASGI instrumentation package: it collects some twenty attributes
per request (host, URL, user agent, every header decoded), resolves the route by
matching the path against every route again, and wraps each ASGI message; measured on
`POST /api/v1/lineage` that more than doubled the app's CPU per request. Here the
sampler decides before any attribute is gathered; an unsampled request pays for the
`traceparent` header scan, the SDK's decision and a context attach; the route
template is the one the router matched (`RouteTemplates`), read after the handler ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metric_labels import UNMATCHED, RouteTemplates, method_label

#: Scrapes, probes and the console's files: frequent, and no one's trace.
EXCLUDED_PATHS = frozenset({"/metrics", "/healthz"})
EXCLUDED_PREFIXES = ("/console/static/", "/console/lib/")
TRACER_NAME = "lineagehub.gateway"
_W3C = TraceContextTextMapPropagator()
_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate"})


def traced_path(path: str) -> bool:
    """False for the scrape, the probe and the console's static files."""
    return path not in EXCLUDED_PATHS and not path.startswith(EXCLUDED_PREFIXES)


def caller_context(headers: list[tuple[bytes, bytes]]) -> Context | None:
    """The caller's W3C trace context from the request headers; None when it sent no
    `traceparent` (a malformed one yields a context without a span: a new trace)."""
    carrier: dict[str, str] = {}
    for name, value in headers:
        if name in _CONTEXT_HEADERS:
            carrier[name.decode()] = value.decode("latin-1")
    if "traceparent" not in carrier:
        return None
    return _W3C.extract(carrier)


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
        self.routes = routes or RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not traced_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        parent = caller_context(scope["headers"])
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
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


def run_traceparent(headers: Mapping[str, str]) -> str | None:
    """The trace context a created PipelineRun continues: the gateway's request span
    when it is traced, else the caller's own `traceparent` when it is well formed."""
    if trace.get_current_span().is_recording():
        return current_context_carrier().get("traceparent")
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=_W3C.extract(headers))
    return carrier.get("traceparent")


def kafka_headers() -> list[tuple[str, bytes]]:
    """Record headers carrying the current span's context when it is sampled, so a
    consumer's span for the record is a child of the span that produced it. Empty
    otherwise: a consumer makes no span for a record without a sampled context, so the
    headers would be bytes on every record for nothing (a batch asks once a record)."""
    context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return []
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    headers = [("traceparent", traceparent.encode())]
    if context.trace_state:
        headers.append(("tracestate", context.trace_state.to_header().encode()))
    return headers
