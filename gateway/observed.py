"""The gateway's one request middleware, outermost: each request gets its id, its span
(when traced), its access log line and its count and latency by route template.

One ASGI layer rather than one for the log and one for the span: both need the
response's status, the method and the route template, so a request pays for one
`send` wrapper and one route lookup, and the span is current for the whole request,
the log line included (it carries the span's ids).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import REQUEST_ID_HEADER_NAME, AccessLine, request_id_from
from gateway.metric_labels import RouteTemplates
from gateway.promtext import GatewayMetrics, RequestChildren
from gateway.tracing import RequestSpans


class ObservedRequests:
    """Assigns the request id (`request.state.request_id`) and echoes it in the
    response; traces the request (`RequestSpans`, when given); counts and times it by
    route template; writes its access line. A request that ends without a response
    (an exception, the client gone) is logged and counted as a 500."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: GatewayMetrics,
        routes: RouteTemplates | None = None,
        spans: RequestSpans | None = None,
    ) -> None:
        self.app = app
        self.routes = routes or RouteTemplates()
        self.spans = spans
        self.line = AccessLine()
        self.children = RequestChildren(metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        spans = self.spans
        opened = None if spans is None else spans.start(scope)
        started = time.perf_counter()
        status = 0
        sent = 0

        async def wrapped_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER_NAME, request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, wrapped_send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = self.routes.label(scope)
            method = str(scope.get("method", ""))
            counted, timed = self.children.get(method, route, status or 500)
            counted.inc()
            timed.observe(elapsed)
            self.line.write(scope, request_id, method, route, status or 500, elapsed, sent)
            if opened is not None:
                opened.end(scope, method, route, status, error)
            error = None  # the exception's traceback holds this frame: no cycle left
