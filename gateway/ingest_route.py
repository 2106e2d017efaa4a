"""The lineage ingest routes, served without the framework's per-request machinery.

`POST /api/v1/lineage` takes almost all of the gateway's traffic, one small event a
request. Profiled at one worker, about half of its CPU went to layers that do nothing
for it: FastAPI's exception-telemetry and body-size wrappers (both inactive here), the
exception middleware, the exit-stack middleware, matching the path against the route
table, and the route's request/response wrapper with its dependency solving.

`GatewayApp` builds two stacks from the same middleware list: the full one, and a lean
one in which the user middleware (tracing, access log and metrics, CORS, body limits,
auth-first) and the server-error middleware wrap the route's own endpoint directly. An
HTTPException from the endpoint is answered by the app's registered handler, as the
exception middleware would. The routes stay in the app's route table (OpenAPI, the
route-auth test, metric labels); only a POST to exactly one of their paths takes the
lean stack, everything else (other methods, a trailing slash) the full one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Any]


class BodyRequest(Request):
    """A Request whose `body()` reads the receive channel itself, when the endpoint asks
    (after its authorization), instead of through `stream()`'s async generator: about
    2.5 of 3.4 us a small body."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            if self._stream_consumed:
                raise RuntimeError("Stream consumed")
            chunks: list[bytes] = []
            more = True
            while more:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._is_disconnected = True
                    raise ClientDisconnect()
                if message["type"] == "http.request":
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
            self._stream_consumed = True
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body


class LeanEndpoint:
    """One route's endpoint as a bare ASGI app, the scope keys set as the router sets
    them (`route`, `endpoint`, `path_params`: the access log and the tracing middleware
    read the route template from them)."""

    def __init__(self, routes: Mapping[str, APIRoute], handlers: Mapping[Any, Handler]) -> None:
        self.routes = dict(routes)
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes[scope["path"]]
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        request = BodyRequest(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except HTTPException as exc:
            response = await self._handle(request, exc)
        await response(scope, receive, send)

    async def _handle(self, request: Request, exc: HTTPException) -> Response:
        """The app's handler for this exception class (the nearest in its MRO)."""
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                answer = handler(request, exc)
                if isinstance(answer, Awaitable):
                    answer = await answer
                assert isinstance(answer, Response)
                return answer
        raise exc


class IngestDispatch:
    """POSTs to the lean paths go to `lean`, everything else to `full`."""

    def __init__(self, full: ASGIApp, lean: ASGIApp, paths: frozenset[str]) -> None:
        self.full = full
        self.lean = lean
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            await self.lean(scope, receive, send)
        else:
            await self.full(scope, receive, send)


class GatewayApp(FastAPI):
    """FastAPI, with chosen POST routes served by the lean stack (see the module doc).

    `lean_route(path)` marks a route already added with a `Request -> Response` endpoint.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lean_paths: set[str] = set()

    def lean_route(self, path: str) -> None:
        if self.middleware_stack is not None:
            raise RuntimeError("lean routes must be marked before the app starts")
        self.lean_paths.add(path)

    def build_middleware_stack(self) -> ASGIApp:
        full = super().build_middleware_stack()
        if not self.lean_paths:
            return full
        routes = {
            r.path: r
            for r in self.router.routes
            if isinstance(r, APIRoute) and r.path in self.lean_paths and "POST" in (r.methods or ())
        }
        missing = self.lean_paths - set(routes)
        if missing:
            raise RuntimeError(f"no POST route for the lean paths {sorted(missing)}")
        handlers = {k: v for k, v in self.exception_handlers.items() if k not in (500, Exception)}
        error_handler = self.exception_handlers.get(500) or self.exception_handlers.get(Exception)
        lean: ASGIApp = LeanEndpoint(routes, handlers)
        for cls, args, kwargs in reversed(self.user_middleware):
            lean = cls(lean, *args, **kwargs)
        lean = ServerErrorMiddleware(lean, handler=error_handler, debug=self.debug)
        return IngestDispatch(full, lean, frozenset(routes))
