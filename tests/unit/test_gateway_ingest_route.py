"""The lean ingest stack (`gateway.ingest_route`) answers exactly as the full FastAPI
stack does, and is the one that serves POSTs to the ingest paths.

Each case is sent to two apps built alike, one with its lean routes and one with none
marked (everything through the router): status, headers and body must be equal, the
request id and Retry-After's seconds aside; so must the request counters by route."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive, Scope, Send

from consumers.samples import lineage_event
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.ingest_route import BodyRequest, GatewayApp, IngestDispatch

WRITER = "ingest-route-writer-token-0001"
READER = "ingest-route-reader-token-0001"
LIMITED = "ingest-route-limited-token-001"
PATHS = ("/api/v1/lineage", "/api/v1/webhook/lineage")


def _app(lean: bool, **settings: Any) -> GatewayApp:
    tokens = parse_tokens(f"{WRITER}:lineage:write;{READER}:lineage:read;{LIMITED}:lineage:write")
    s = Settings(tokens=tokens, **{"rate_per_s": 0, "max_body_bytes": 64 * 1024, **settings})
    app = create_app(s, publisher=None, runs=None, metrics_store=None)
    assert isinstance(app, GatewayApp)
    if not lean:
        app.lean_paths.clear()
    return app


def _event() -> dict[str, Any]:
    return lineage_event(str(uuid.uuid4()), "START", namespace="ingest-route")


def _auth(token: str = WRITER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _chunks(text: str, size: int = 40) -> Iterator[bytes]:
    data = text.encode()
    return iter([data[i : i + size] for i in range(0, len(data), size)])


Case = Callable[[TestClient, str], Any]

CASES: dict[str, Case] = {
    "no token": lambda c, p: c.post(p, json=_event()),
    "unknown token": lambda c, p: c.post(p, json=_event(), headers=_auth("x" * 30)),
    "lacks the scope": lambda c, p: c.post(p, json=_event(), headers=_auth(READER)),
    "not JSON": lambda c, p: c.post(p, content=b"{nope", headers=_auth()),
    "empty body": lambda c, p: c.post(p, content=b"", headers=_auth()),
    "invalid event": lambda c, p: c.post(p, json={"eventType": "START"}, headers=_auth()),
    "a bare number": lambda c, p: c.post(p, json=3, headers=_auth()),
    "too large declared": lambda c, p: c.post(p, content=b"x" * 70_000, headers=_auth()),
    "gzip": lambda c, p: c.post(
        p,
        content=gzip.compress(json.dumps({"eventType": "X"}).encode()),
        headers={**_auth(), "Content-Encoding": "gzip"},
    ),
    "bad gzip": lambda c, p: c.post(
        p, content=b"\x1f\x8bnot", headers={**_auth(), "Content-Encoding": "gzip"}
    ),
    "unsupported encoding": lambda c, p: c.post(
        p, content=b"{}", headers={**_auth(), "Content-Encoding": "br"}
    ),
    "valid, no Kafka": lambda c, p: c.post(p, json=_event(), headers=_auth()),
    "batch, mixed": lambda c, p: c.post(p, json=[_event(), {"x": 1}, 7], headers=_auth()),
    "batch, empty": lambda c, p: c.post(p, json=[], headers=_auth()),
    "request id echoed": lambda c, p: c.post(
        p, json=_event(), headers={**_auth(), "X-Request-ID": "caller-id-1"}
    ),
    "GET": lambda c, p: c.get(p, headers=_auth()),
    "trailing slash": lambda c, p: c.post(p + "/", json=_event(), headers=_auth()),
    "chunked, invalid": lambda c, p: c.post(
        p, content=iter([b'{"eventType": ', b'"START"}']), headers=_auth()
    ),
    "chunked, valid": lambda c, p: c.post(
        p, content=_chunks(json.dumps(_event())), headers=_auth()
    ),
}


def _shape(response: Any) -> tuple[int, dict[str, str], Any]:
    headers = {k.lower(): v for k, v in response.headers.items()}
    if headers.get("x-request-id") != "caller-id-1":
        headers.pop("x-request-id", None)  # a fresh one per request
    if "retry-after" in headers:
        headers["retry-after"] = "present"
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return response.status_code, headers, body


def _request_counts(client: TestClient) -> list[str]:
    text = client.get("/metrics").text
    return sorted(line for line in text.splitlines() if re.match(r"^\w*requests_total\{", line))


@pytest.mark.parametrize("path", PATHS)
def test_every_case_is_answered_as_the_full_stack_answers_it(path: str) -> None:
    with TestClient(_app(lean=True)) as lean, TestClient(_app(lean=False)) as full:
        for name, case in CASES.items():
            got, want = _shape(case(lean, path)), _shape(case(full, path))
            assert got == want, name
        assert _request_counts(lean) == _request_counts(full)
        assert any(f'route="{path}"' in line for line in _request_counts(lean))


def test_rate_limit_and_cors_as_the_full_stack() -> None:
    options = {"rate_per_s": 0.001, "rate_burst": 1, "cors_origins": ("https://ui.example",)}
    with TestClient(_app(True, **options)) as lean, TestClient(_app(False, **options)) as full:
        headers = {**_auth(LIMITED), "Origin": "https://ui.example"}
        for _ in range(2):  # the second is over the limit
            got = _shape(lean.post(PATHS[0], json=_event(), headers=headers))
            want = _shape(full.post(PATHS[0], json=_event(), headers=headers))
            assert got == want
        assert got[0] == 429
        assert got[1]["access-control-allow-origin"] == "https://ui.example"


def test_only_posts_to_the_ingest_paths_take_the_lean_stack() -> None:
    app = _app(lean=True)
    with TestClient(app) as client:
        client.get("/metrics")  # builds the stack
        dispatch = app.middleware_stack
        assert isinstance(dispatch, IngestDispatch)
        full = dispatch.full
        seen: list[str] = []

        async def counting(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(f"{scope['method']} {scope['path']}")
            await full(scope, receive, send)

        dispatch.full = counting
        for path in PATHS:
            assert client.post(path, json=_event(), headers=_auth()).status_code == 503
        assert seen == []
        client.get(PATHS[0], headers=_auth())
        client.post(PATHS[0] + "/", json=_event(), headers=_auth())
        client.post("/api/v1/pipeline/run", json={}, headers=_auth())
        assert seen == [
            f"GET {PATHS[0]}",
            f"POST {PATHS[0]}/",
            "POST /api/v1/pipeline/run",
        ]


def test_a_lean_path_without_its_route_is_refused_at_start() -> None:
    app = _app(lean=True)
    app.lean_paths.add("/api/v1/nowhere")
    with pytest.raises(RuntimeError, match="/api/v1/nowhere"), TestClient(app) as client:
        client.get("/metrics")


def _request(cls: type[Request], messages: list[Message]) -> Request:
    queue = iter(messages)

    async def receive() -> Message:
        return next(queue)

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    return cls({"type": "http", "method": "POST", "headers": []}, receive, send)


async def _read(cls: type[Request], messages: list[Message]) -> tuple[object, ...]:
    request = _request(cls, messages)
    try:
        first = await request.body()
    except ClientDisconnect:
        return ("disconnect", await request.is_disconnected())
    return (first, await request.body())  # the second read is the same body


MESSAGES: dict[str, list[Message]] = {
    "one": [{"type": "http.request", "body": b"abc", "more_body": False}],
    "no body key": [{"type": "http.request"}],
    "chunks": [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"bc", "more_body": False},
    ],
    "disconnect midway": [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.disconnect"},
    ],
}


@pytest.mark.parametrize("name", MESSAGES)
async def test_the_lean_body_read_is_the_requests(name: str) -> None:
    messages = MESSAGES[name]
    assert await _read(BodyRequest, messages) == await _read(Request, messages)
