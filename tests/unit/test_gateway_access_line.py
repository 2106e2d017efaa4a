"""The access log line written straight to the configured handler (`JsonLineHandler.
write_info`) is the line logging's record and `JsonFormatter` make: same keys in the same
order, same values; it is taken only when that handler alone would get the record."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider

from consumers.samples import lineage_event
from gateway import logs
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings

WRITER = "access-line-writer-token-00001"
FIELDS: dict[str, Any] = {
    "request_id": "r-1",
    "method": "POST",
    "path": "/api/v1/lineage",
    "route": "/api/v1/lineage",
    "status": 201,
    "duration_ms": 0.25,
    "bytes_sent": 180,
    "client": None,
    "principal": "token:abc",
}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """`logs.configure` with its handler writing to a buffer; the root logger restored."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("INFO")
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logs.JsonLineHandler)
    handler.setStream(out)
    try:
        yield out
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def _alone() -> logs.JsonLineHandler:
    """The configured handler as the root's only one (pytest adds its capture handlers to
    the root logger for each test phase)."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logs.JsonLineHandler)]
    (handler,) = root.handlers
    assert isinstance(handler, logs.JsonLineHandler)
    return handler


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _comparable(line: dict[str, Any]) -> list[tuple[str, Any]]:
    """Keys in order, values but the clock's."""
    return [(k, None if k in ("time", "duration_ms", "request_id") else v) for k, v in line.items()]


@pytest.mark.parametrize("in_span", [False, True])
def test_write_info_is_the_formatted_record(stream: io.StringIO, in_span: bool) -> None:
    log = logging.getLogger(logs.ACCESS_LOGGER)
    handler = _alone()
    assert logs.only_json_handler(log) is handler

    def both() -> None:
        handler.write_info(log.name, "request", dict(FIELDS))
        log.info("request", extra=dict(FIELDS))

    if in_span:
        with TracerProvider().get_tracer("t").start_as_current_span("s"):
            both()
    else:
        both()
    direct, formatted = _lines(stream)
    assert list(direct) == list(formatted)
    assert _comparable(direct) == _comparable(formatted)
    assert direct["request_id"] == "r-1" and direct["level"] == "info"
    assert ("trace_id" in direct) is in_span and ("span_id" in direct) is in_span


def test_only_the_configured_handler_alone_takes_the_direct_path(stream: io.StringIO) -> None:
    log = logging.getLogger(logs.ACCESS_LOGGER)
    root = logging.getLogger()
    handler = _alone()
    assert logs.only_json_handler(log) is handler
    capture = logging.Handler()
    log.addHandler(capture)  # a record another handler must see: no shortcut
    try:
        assert logs.only_json_handler(log) is None
    finally:
        log.removeHandler(capture)
    root.handlers[0].addFilter(lambda record: True)
    assert logs.only_json_handler(log) is None
    root.handlers[0].filters.clear()
    root.handlers[0].setFormatter(logging.Formatter())
    assert logs.only_json_handler(log) is None


def _app() -> TestClient:
    settings = Settings(tokens=parse_tokens(f"{WRITER}:lineage:write"), rate_per_s=0)
    return TestClient(create_app(settings, publisher=None, runs=None, metrics_store=None))


def _post(client: TestClient) -> None:
    event = lineage_event(str(uuid.uuid4()), "START", namespace="access-line")
    client.post("/api/v1/lineage", json=event, headers={"Authorization": f"Bearer {WRITER}"})
    client.get("/api/v1/nothing-here")


def test_the_app_writes_the_same_lines_either_way(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _alone()
    direct: list[str] = []
    write_info = handler.write_info

    def counted(logger: str, message: str, fields: dict[str, Any]) -> None:
        direct.append(message)
        write_info(logger, message, fields)

    monkeypatch.setattr(handler, "write_info", counted)
    with _app() as client:
        _post(client)  # the direct path
        assert direct == ["request", "request"]
        handler.addFilter(lambda record: True)  # through logging
        _post(client)
        assert len(direct) == 2
    lines = [line for line in _lines(stream) if line["logger"] == logs.ACCESS_LOGGER]
    assert len(lines) == 4
    assert [_comparable(line) for line in lines[:2]] == [_comparable(line) for line in lines[2:]]
    post, missing = lines[:2]
    assert (post["method"], post["status"], post["route"]) == ("POST", 503, "/api/v1/lineage")
    assert post["principal"].startswith("token:") and post["bytes_sent"] > 0
    assert list(post)[4:] == list(FIELDS)
    assert (missing["method"], missing["status"], missing["principal"]) == ("GET", 404, None)


def test_below_info_no_line(stream: io.StringIO) -> None:
    _alone()
    logging.getLogger().setLevel(logging.WARNING)
    with _app() as client:
        _post(client)
    assert [line for line in _lines(stream) if line["logger"] == logs.ACCESS_LOGGER] == []
