"""One JSON object per log line (with the current span's `trace_id` and `span_id`), and
the access log with a correlation id (X-Request-ID)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metric_labels import RouteTemplates, method_label, status_label
from gateway.promtext import GatewayMetrics
from lineagehub.tracelog import current_span_ids

ACCESS_LOGGER = "lineagehub.gateway.access"
REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **current_span_ids(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(doc, default=str).decode()
        except (orjson.JSONEncodeError, UnicodeDecodeError):
            return json.dumps(doc, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is a safe token, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1").strip()
            if _SAFE_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


class AccessLog:
    """Outermost middleware: assigns the request id (request.state.request_id), echoes it
    in the response, logs one JSON line per request and counts it by route template."""

    def __init__(
        self, app: ASGIApp, metrics: GatewayMetrics, routes: RouteTemplates | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes or RouteTemplates()
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        sent = 0

        async def wrapped_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            elapsed = time.perf_counter() - started
            route = self.routes.label(scope)
            method = str(scope.get("method", ""))
            # Labels from a closed set: a caller must not be able to mint series.
            self.metrics.requests.labels(method_label(method), route, status_label(status)).inc()
            self.metrics.latency.labels(method_label(method), route).observe(elapsed)
            client = scope.get("client")
            state = scope.get("state", {})
            self.log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": method[:32],
                    "path": scope.get("path", ""),
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "bytes_sent": sent,
                    "client": client[0] if client else None,
                    "principal": state.get("principal"),
                },
            )
