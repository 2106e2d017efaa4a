"""Writes are authenticated before their body is read.

FastAPI reads and parses a request's body before it runs the route's dependencies (the
auth check among them), so an unauthenticated caller could make the gateway hold and
parse a body of up to the global limit (5 MiB parses to ~130 MB of Python objects) per
request. This middleware refuses a write (POST, PUT, PATCH, DELETE under `/api/`) whose
bearer token is unknown before anything is read, and holds chosen routes to a smaller
body limit. The route's own dependency still checks the token's scope, reusing the
principal found here (`auth.authenticate_once`) rather than hashing the token again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import TokenStore, authenticate_once
from gateway.body import BodyLimit

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthFirst:
    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenStore,
        route_limits: Mapping[str, int],
        on_reject: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.route_limits = dict(route_limits)
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or not str(scope["path"]).startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
        text = header.decode("latin-1") if header is not None else None
        if (
            not self.tokens.anonymous
            and authenticate_once(self.tokens, scope.setdefault("state", {}), text) is None
        ):
            self.on_reject()
            body = json.dumps({"detail": "a valid bearer token is required"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        limit = self.route_limits.get(str(scope["path"]))
        if limit is not None:
            await BodyLimit(self.app, limit)(scope, receive, send)
            return
        await self.app(scope, receive, send)
