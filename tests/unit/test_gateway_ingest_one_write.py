"""The gateway's HTTP protocol (`gateway.http_protocol`) sends each response's head and
body in one socket write, without holding back a streamed response's headers, and
answers byte for byte as uvicorn's own httptools protocol does.

Real uvicorn servers on loopback sockets; the only addition is a count of the writes
each connection's transport receives (below the holding layer)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from consumers.samples import lineage_event
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.http_protocol import HoldingTransport, OneWriteHttpToolsProtocol
from gateway.serve import ServerThread

TOKEN = "one-write-writer-token-000001"
#: Every connection's writes, in order, as the socket was handed them.
WRITES: list[bytes] = []


class CountingTransport:
    """The real transport, with each write it is handed noted in `WRITES`."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CountedOneWrite(OneWriteHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        counted: Any = CountingTransport(transport)
        super().connection_made(counted)


class CountedStock(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        counted: Any = CountingTransport(transport)
        super().connection_made(counted)


def _app() -> Any:
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:lineage:write"), rate_per_s=0, max_body_bytes=64 * 1024
    )
    return create_app(settings, publisher=None, runs=None, metrics_store=None)


def _request(path: str, body: bytes, token: str | None = TOKEN) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}"]
    lines += ["Content-Type: application/json", "X-Request-ID: fixed-id-1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before a whole head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


EVENT = json.dumps(lineage_event(str(uuid.uuid4()), "START", namespace="one-write")).encode()
REQUESTS = {
    "valid, no Kafka (503)": _request("/api/v1/lineage", EVENT),
    "invalid event (400)": _request("/api/v1/lineage", b'{"eventType": "START"}'),
    "batch (200 per item)": _request("/api/v1/lineage", b"[" + EVENT + b", 7]"),
    "no token (401)": _request("/api/v1/lineage", EVENT, token=None),
    "too large (413)": _request("/api/v1/lineage", b"x" * 70_000),
    "not found (404)": _request("/api/v1/nothing-here", b"{}"),
}


def _served(server: ServerThread) -> dict[str, tuple[bytes, list[bytes]]]:
    """Each request on one keep-alive connection: the response, and the writes it took."""
    out: dict[str, tuple[bytes, list[bytes]]] = {}
    with socket.create_connection((server.host, server.port)) as sock:
        for name, request in REQUESTS.items():
            if name.startswith("too large"):
                continue  # answered before the body is read: the connection is closed after
            WRITES.clear()
            sock.sendall(request)
            response = _read_response(sock)
            out[name] = (response, list(WRITES))
    with socket.create_connection((server.host, server.port)) as sock:
        WRITES.clear()
        sock.sendall(REQUESTS["too large (413)"])
        out["too large (413)"] = (_read_response(sock), list(WRITES))
    return out


def _without_date(response: bytes) -> bytes:
    return b"\r\n".join(
        line for line in response.split(b"\r\n") if not line.lower().startswith(b"date:")
    )


def test_each_response_is_one_write_and_the_bytes_are_the_stock_protocols() -> None:
    with (
        ServerThread(_app(), http=CountedOneWrite) as ours,
        ServerThread(_app(), http=CountedStock) as stock,
    ):
        got, expected = _served(ours), _served(stock)
    for name, (response, writes) in got.items():
        assert writes == [response], f"{name}: {len(writes)} writes"
        stock_response, stock_writes = expected[name]
        assert len(stock_writes) == 2, f"{name}: the stock protocol writes head and body apart"
        assert _without_date(response) == _without_date(stock_response), name


def _streaming_app(box: dict[str, Any]) -> Any:
    """A streamed response whose body waits for the test's go (`box["go"]`)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        box["loop"], box["go"] = asyncio.get_running_loop(), asyncio.Event()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await box["go"].wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})

    return app


def _recv_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed early"
        data += chunk
    return data


def test_a_streamed_responses_head_is_not_held_for_its_first_chunk() -> None:
    box: dict[str, Any] = {}
    with (
        ServerThread(_streaming_app(box), http=OneWriteHttpToolsProtocol) as server,
        socket.create_connection((server.host, server.port), timeout=10) as sock,
    ):
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        head = _recv_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"data: 1" not in head  # the body is not released yet
        box["loop"].call_soon_threadsafe(box["go"].set)
        assert b"data: 1\n\n" in _recv_until(sock, b"0\r\n\r\n")


class RecordingTransport(asyncio.Transport):
    """A transport that only records what it is asked to do."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    loop = asyncio.new_event_loop()
    try:
        closed = RecordingTransport()
        holding = HoldingTransport(closed, loop)
        holding.write(b"HTTP/1.1 500 \r\n\r\n")
        holding.close()
        assert closed.calls == [("write", b"HTTP/1.1 500 \r\n\r\n"), ("close", b"")]
        loop.run_until_complete(asyncio.sleep(0))  # the scheduled flush finds nothing
        assert len(closed.calls) == 2

        aborted = RecordingTransport()
        holding = HoldingTransport(aborted, loop)
        holding.write(b"HTTP/1.1 200 OK\r\n\r\n")
        holding.abort()
        loop.run_until_complete(asyncio.sleep(0))
        assert aborted.calls == [("abort", b"")]
    finally:
        loop.close()


def test_writes_after_the_first_pair_are_held_until_the_loops_next_turn_in_order() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = RecordingTransport()
        holding = HoldingTransport(transport, loop)
        holding.write(b"head")
        holding.write(b"body1")
        holding.write(b"body2")
        assert transport.calls == [("write", b"headbody1")]
        loop.run_until_complete(asyncio.sleep(0))
        assert transport.calls == [("write", b"headbody1"), ("write", b"body2")]
    finally:
        loop.close()
