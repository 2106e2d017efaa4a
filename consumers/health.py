"""A tiny HTTP server for `/healthz` and `/metrics` (Prometheus text), on asyncio streams.

No web framework: two GET routes, one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from consumers.sql_http import MAX_QUERY_BYTES, QueryRefused, Runner, guarded
from consumers.stats import Stats

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192


@dataclass
class Health:
    """What `/healthz` reports. The consumer loops flip these flags."""

    started: bool = False
    stopping: bool = False
    # A dependency (Marquez, ClickHouse) is failing and the consumer waits and retries,
    # by who reports it (a partition's flush, an event, the Marquez gate): several
    # consumers and partitions share one Health, and one recovering must not hide another
    # that still fails.
    reasons: dict[str, str] = field(default_factory=dict)

    def degrade(self, source: str, reason: str) -> None:
        self.reasons[source] = reason

    def recover(self, source: str) -> None:
        self.reasons.pop(source, None)

    @property
    def degraded_reason(self) -> str:
        if not self.reasons:
            return ""
        first = next(iter(self.reasons.values()))  # the first reported of those left
        more = len(self.reasons) - 1
        return f"{first} (and {more} more)" if more else first

    @degraded_reason.setter
    def degraded_reason(self, reason: str) -> None:
        if reason:
            self.degrade("", reason)
        else:
            self.recover("")

    def body(self) -> tuple[int, dict[str, object]]:
        ok = self.started and not self.stopping
        status = "ok" if ok and not self.degraded_reason else ("degraded" if ok else "down")
        payload: dict[str, object] = {"status": status}
        if self.degraded_reason:
            payload["reason"] = self.degraded_reason
        # Degraded is still alive: the consumer is paused on purpose, restarting it won't help.
        return (200 if ok else 503), payload


#: Answers `GET /api/v1/...` (the path after that prefix) with a status and a JSON body.
ApiHandler = Callable[[str], Awaitable[tuple[int, dict[str, object]]]]
API_PREFIX = "/api/v1/"


class HealthServer:
    def __init__(
        self,
        stats: Stats,
        health: Health,
        host: str = "127.0.0.1",
        port: int = 0,
        extra: Callable[[], dict[str, object]] | None = None,
        api: ApiHandler | None = None,
        sql: Runner | None = None,
    ) -> None:
        self.stats = stats
        self.health = health
        self.host = host
        self.port = port
        self.extra = extra
        self.api = api
        self.sql = sql  # read-only SQL on `POST /` (consumers/sql_http.py)
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health endpoint listening", extra={"host": self.host, "port": self.port})
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        try:
            if len(head) > MAX_REQUEST_BYTES:
                status, ctype, body = 431, "text/plain", b"request header too large\n"
            else:
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, _, rest = request_line.partition(" ")
                target = rest.split(" ", 1)[0].split("?", 1)[0]
                if self.sql is not None and method == "POST" and target == "/":
                    status, ctype, body = await self._query(head, reader)
                else:
                    status, ctype, body = await self._dispatch(request_line)
            reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
            reason = reasons.get(status, "Error")
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _query(self, head: bytes, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        """`POST /` with a SELECT as the body: JSONEachRow lines, or the error as text."""
        assert self.sql is not None
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length < 0:
            return 411, "text/plain", b"Content-Length required\n"
        if length > MAX_QUERY_BYTES:
            return 413, "text/plain", f"query over {MAX_QUERY_BYTES} bytes\n".encode()
        try:
            async with asyncio.timeout(10):
                raw = await reader.readexactly(length)
            query = guarded(raw.decode("utf-8"))
        except (asyncio.IncompleteReadError, TimeoutError):
            return 400, "text/plain", b"incomplete body\n"
        except (UnicodeDecodeError, QueryRefused) as exc:
            return 400, "text/plain", f"refused: {exc}\n".encode()
        try:
            text = await self.sql(query)
        except Exception as exc:  # the store's own error text, as ClickHouse answers
            return 500, "text/plain", (str(exc)[:4000] + "\n").encode()
        return 200, "application/x-ndjson", text.encode()

    async def _dispatch(self, request_line: str) -> tuple[int, str, bytes]:
        parts = request_line.split(" ")
        path = parts[1].split("?", 1)[0] if len(parts) == 3 else ""
        if self.api is not None and parts[0] == "GET" and path.startswith(API_PREFIX):
            status, payload = await self.api(path[len(API_PREFIX) :])
            return status, "application/json", (json.dumps(payload) + "\n").encode()
        return self._route(request_line)

    def _route(self, request_line: str) -> tuple[int, str, bytes]:
        parts = request_line.split(" ")
        if len(parts) != 3:
            return 400, "text/plain", b"bad request\n"
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if method not in {"GET", "HEAD"}:
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", self.stats.prometheus().encode()
        if path in {"/healthz", "/livez", "/readyz"}:
            status, payload = self.health.body()
            payload["lag"] = self.stats.total_lag()
            if self.extra is not None:
                payload.update(self.extra())
            return status, "application/json", (json.dumps(payload) + "\n").encode()
        return 404, "text/plain", b"not found\n"
