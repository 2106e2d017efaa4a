"""A write without a known token is refused before its body is read (gateway/auth_first.py).

FastAPI reads and parses a body before the route's auth dependency runs; the gateway's
first middleware refuses an API write whose bearer token is unknown before that, and
holds the run-creating route to its smaller body limit. These tests drive the real app
(`create_app`, no backends: nothing past auth can do real work) at the ASGI boundary,
where a test sees whether the body was pulled, and over HTTP through uvicorn, where a
request declares a body that never comes. No chdb here: the mutation run forks per test.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.app import MAX_RUN_BODY_BYTES, create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.serve import ServerThread
from tests.unit.test_gateway_route_auth import endpoints

WRITER = "auth-first-runs-writer-0001"
REFUSAL = {"detail": "a valid bearer token is required"}
UNKNOWN = (None, b"Bearer not-a-known-token-0000001", b"Basic dXNlcjpwYXNz", b"Bearer")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
API_RUNS = "/api/v1/pipeline/run"


def _app(anonymous: bool = False) -> FastAPI:
    tokens = parse_tokens(f"{WRITER}:runs:write,lineage:write", anonymous=anonymous)
    return create_app(
        Settings(tokens=tokens, rate_per_s=0), publisher=None, runs=None, metrics_store=None
    )


APP = _app()
WRITE_ROUTES = sorted(
    {(m, p.replace("{", "").replace("}", "")) for m, p, _ in endpoints(APP) if m in WRITES}
)


@dataclass
class Exchange:
    """One request at the ASGI boundary: what the app pulled of the body, what it sent."""

    pulled: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> object:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return [(bytes(k), bytes(v)) for k, v in start["headers"]]

    @property
    def body(self) -> bytes:
        return b"".join(
            bytes(m.get("body", b"")) for m in self.sent if m["type"] == "http.response.body"
        )


def call(
    app: FastAPI, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> Exchange:
    """Send one request to the app as an ASGI server would, counting body pulls."""
    exchange = Exchange()

    async def receive() -> dict[str, object]:
        exchange.pulled += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        exchange.sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return exchange


def _auth(value: bytes | None) -> list[tuple[bytes, bytes]]:
    return [] if value is None else [(b"authorization", value)]


def test_the_write_routes_are_read_from_the_app() -> None:
    # Guards the parametrisation: an empty list would make the tests below pass unseen.
    assert ("POST", API_RUNS) in WRITE_ROUTES
    assert ("POST", "/api/v1/lineage") in WRITE_ROUTES


@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
@pytest.mark.parametrize("authorization", UNKNOWN, ids=repr)
def test_a_write_without_a_known_token_is_refused_before_its_body_is_read(
    method: str, path: str, authorization: bytes | None
) -> None:
    # A body the route would parse (and refuse as invalid) if it got that far.
    got = call(APP, method, path, _auth(authorization), b'{"not": "a valid request"')
    assert got.pulled == 0, f"{method} {path}: the body was read before auth"
    assert got.status == 401
    assert json.loads(got.body) == REFUSAL
    # As ASGI requires (names in lower case), and a length that is the body's; the access
    # log's outer middleware adds the request id.
    assert [h for h in got.headers if h[0] != b"x-request-id"] == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(got.body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]


def test_the_early_refusal_is_the_routes_own_refusal() -> None:
    """A client sees the same 401 whether the middleware or the route refused it."""
    with TestClient(APP) as client:
        read = client.get(f"{API_RUNS}/run-1")  # a read: the route's own dependency refuses
        write = client.post(API_RUNS, content=b"{}")
    assert read.status_code == write.status_code == 401
    assert read.json() == write.json() == REFUSAL
    assert read.headers["www-authenticate"] == write.headers["www-authenticate"] == "Bearer"


def test_a_known_token_reaches_the_route_which_reads_the_body() -> None:
    got = call(APP, "POST", API_RUNS, _auth(f"Bearer {WRITER}".encode()), b'{"not": "json"')
    assert got.pulled >= 1
    assert got.status == 422  # the route's own answer to a malformed body


def test_without_authentication_every_write_reaches_its_route() -> None:
    got = call(_app(anonymous=True), "POST", API_RUNS, [], b'{"not": "json"')
    assert got.pulled >= 1 and got.status == 422


def test_reads_and_writes_outside_the_api_are_left_to_their_routes() -> None:
    with TestClient(APP) as client:
        # The console's shell has no POST: the app's own 405, not the API's 401.
        assert client.post("/console", content=b"x").status_code == 405
        assert client.get("/api/v1/health").status_code != 401


def test_the_run_route_refuses_a_body_over_its_own_limit_before_reading_it() -> None:
    token = _auth(f"Bearer {WRITER}".encode())
    over = call(APP, "POST", API_RUNS, token, b" " * (MAX_RUN_BODY_BYTES + 1))
    assert over.status == 413 and over.pulled == 0
    assert str(MAX_RUN_BODY_BYTES) in json.loads(over.body)["detail"]
    # The same size is fine on a route without its own limit (the global one is larger).
    other = call(APP, "POST", "/api/v1/lineage", token, b" " * (MAX_RUN_BODY_BYTES + 1))
    assert other.status != 413 and other.pulled >= 1
    # And on the run route, a body at its limit is the route's to judge.
    at = call(APP, "POST", API_RUNS, token, b" " * MAX_RUN_BODY_BYTES)
    assert at.status == 422 and at.pulled >= 1


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(APP) as served:
        yield served


def _exchange(server: ServerThread, head: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send `head` (request line and headers, no body) and read one response."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the gateway closed the connection without an answer"
            data += chunk
        raw_head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "the gateway closed the connection mid-answer"
            body += chunk
    return status_line, headers, body


def test_over_http_the_refusal_comes_while_the_body_is_still_unsent(
    server: ServerThread,
) -> None:
    """The request promises a megabyte and sends none of it: the 401 must come anyway
    (a gateway reading the body first would wait for it, and the read would time out)."""
    head = (
        f"POST {API_RUNS} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\nAuthorization: Bearer not-a-known-token-0000001\r\n\r\n"
    ).encode()
    status_line, headers, body = _exchange(server, head)
    assert status_line.split(" ", 2)[1] == "401"
    assert json.loads(body) == REFUSAL
    assert headers["content-type"] == "application/json"
    assert headers["www-authenticate"] == "Bearer"
