"""A lean HTTP/1.1 load client for the gateway benches: one keep-alive connection per
worker, requests built once, answers read by Content-Length.

httpx costs the load generator several times the CPU the gateway spends on a small
request, so on a small machine it measured the client, not the gateway; this one
costs tens of microseconds a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit


def post_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one `POST` to `url` with `body` (keep-alive)."""
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(request)
        return await _answer(reader)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            writer.close()
            await writer.wait_closed()
            self._streams = None


@contextlib.contextmanager
def generator_heap_frozen() -> Iterator[None]:
    """The load generator's heap so far (the events and request bodies built before a
    phase: often millions of objects) frozen out of its garbage collector for the
    phase, so the generator's own collections do not pause its load (the gateway,
    another process, has its own). No collection first: it would cost the generator
    ~0.1 s of CPU a phase, counted in its CPU per event; what is garbage is freed when
    the phase ends and the heap is handed back."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def closed_loop(
    url: str, requests: Sequence[bytes], concurrency: int, ok: set[int]
) -> tuple[float, list[float]]:
    """Every request, `concurrency` at a time: (wall seconds, latencies)."""
    host, port = _host_port(url)
    queue = list(reversed(requests))
    latencies: list[float] = []

    async def worker() -> None:
        connection = Connection(host, port)
        try:
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                status, body = await connection.send(request)
                latencies.append(time.perf_counter() - started)
                if status not in ok:
                    raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
        finally:
            await connection.close()

    with generator_heap_frozen():
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


async def open_loop(
    url: str, requests: Sequence[bytes], per_s: float, concurrency: int, ok: set[int]
) -> tuple[float, list[float]]:
    """Request i is due at i / per_s seconds, on the first free of `concurrency`
    connections; each latency counts from when it was due, so a backlog shows (no
    coordinated omission).

    The generator's heap is kept out of its collections (`generator_heap_frozen`): a
    full collection over it paused this loop for 100-200 ms, which, counted from when
    each request was due, read as the gateway's p99."""
    with generator_heap_frozen():
        return await _open_loop(url, requests, per_s, concurrency, ok)


async def _open_loop(
    url: str, requests: Sequence[bytes], per_s: float, concurrency: int, ok: set[int]
) -> tuple[float, list[float]]:
    host, port = _host_port(url)
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(concurrency):
        free.put_nowait(Connection(host, port))
    latencies: list[float] = []

    async def one(connection: Connection, request: bytes, due: float) -> None:
        try:
            status, body = await connection.send(request)
            latencies.append(time.perf_counter() - due)
            if status not in ok:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
        finally:
            free.put_nowait(connection)

    started = time.perf_counter()
    tasks = []
    for i, request in enumerate(requests):
        due = started + i / per_s
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the load, not synchronisation
        connection = await free.get()
        tasks.append(asyncio.create_task(one(connection, request, due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    while not free.empty():
        await free.get_nowait().close()
    return wall, latencies
