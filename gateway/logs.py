"""One JSON object per log line (with the current span's `trace_id` and `span_id`), and
the access log with a correlation id (X-Request-ID)."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import Scope

from lineagehub.tracelog import current_span_ids

ACCESS_LOGGER = "lineagehub.gateway.access"
REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class IsoMillis:
    """`datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")`, the date and
    time of day formatted once a second (that call was half the cost of writing the
    access line). The microseconds are rounded half to even as `fromtimestamp` rounds
    them, a rounding up to the next second included."""

    def __init__(self) -> None:
        # One tuple, replaced whole: a thread never pairs one second with another's text.
        self._cached = (math.nan, "")

    def __call__(self, created: float) -> str:
        fraction, second = math.modf(created)
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            second += 1.0
            micros -= 1_000_000
        if micros < 0:  # before 1970: not worth a cache
            return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
            self._cached = (second, prefix)
        return f"{prefix}.{micros // 1000:03d}+00:00"


_iso_millis = IsoMillis()


def _document(
    created: float, level: str, logger: str, message: str, fields: dict[str, Any]
) -> dict[str, Any]:
    return {
        "time": _iso_millis(created),
        "level": level,
        "logger": logger,
        "message": message,
        **current_span_ids(),
        **fields,
    }


def _encoded(doc: dict[str, Any]) -> str:
    try:
        return orjson.dumps(doc, default=str).decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return json.dumps(doc, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        }
        doc = _document(
            record.created, record.levelname.lower(), record.name, record.getMessage(), fields
        )
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return _encoded(doc)


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, one JSON line a record; `write_info` writes the line `JsonFormatter` would
    make of an INFO record with these `extra` fields, without building the record (the
    access log's line cost about a sixth of a small ingest request's CPU)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter())

    def write_info(self, logger: str, message: str, fields: dict[str, Any]) -> None:
        line = _encoded(_document(time.time(), "info", logger, message, fields))
        try:
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line + self.terminator)
                self.stream.flush()
        except Exception:  # as StreamHandler.emit: a failed write is reported, not raised
            record = logging.makeLogRecord({"name": logger, "msg": message, **fields})
            self.handleError(record)


def only_json_handler(log: logging.Logger) -> JsonLineHandler | None:
    """The handler an INFO record of `log` would reach, when that is only the one
    `configure` installed, with no filter anywhere on the way; else None (a test's capture
    handler, a filter: the record must be built and go through logging)."""
    found: JsonLineHandler | None = None
    logger: logging.Logger | None = log
    while logger is not None:
        if logger.filters:
            return None
        for handler in logger.handlers:
            if found is not None or type(handler) is not JsonLineHandler or handler.filters:
                return None
            if type(handler.formatter) is not JsonFormatter:
                return None
            if handler.level > logging.INFO:
                return None
            found = handler
        if not logger.propagate:
            break
        logger = logger.parent
    return found


def configure(level: str = "INFO") -> None:
    handler = JsonLineHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RequestIds:
    """Fresh request ids: 32 hex digits, a random 64-bit prefix drawn once per process
    (again in a forked child) and a 64-bit counter. Unique across workers and restarts
    as a random uuid is, at a tenth of a uuid4's cost (its constructor, not the
    randomness, was ~3% of a small request's CPU)."""

    def __init__(self) -> None:
        self._prefix = ""
        self._counter = itertools.count()
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_IDS = RequestIds()
REQUEST_ID_HEADER_NAME = REQUEST_ID_HEADER.encode()


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is a safe token, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER_NAME:
            text = value.decode("latin-1").strip()
            if _SAFE_ID.match(text):
                return text
            break
    return _IDS.next()


class AccessLine:
    """The access log: one JSON line per request (`write`), with the ids of the span
    current when it is written (the request's, `gateway.observed` writes it inside)."""

    def __init__(self) -> None:
        self.log = logging.getLogger(ACCESS_LOGGER)

    def write(
        self,
        scope: Scope,
        request_id: str,
        method: str,
        route: str,
        status: int,
        elapsed: float,
        sent: int,
    ) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        fields = {
            "request_id": request_id,
            "method": method[:32],
            "path": scope.get("path", ""),
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "bytes_sent": sent,
            "client": client[0] if client else None,
            "principal": scope.get("state", {}).get("principal"),
        }
        direct = only_json_handler(self.log)
        if direct is not None:
            direct.write_info(self.log.name, "request", fields)
        else:
            self.log.info("request", extra=fields)
