"""A Marquez stand-in on loopback for the consumer tests: `POST /api/v1/lineage` and
`GET /api/v1/namespaces` answered as Marquez answers them, with failures and slowness
on command.

Marquez answers a stored event with 201 and its probe with 200. What the tests switch:

* `post_status` / `get_status`: answer every POST / GET with this status instead
  (500 on POST with 200 on GET is Marquez whose database went read-only).
* `status_for`: a per-event status (a poison event), checked before `post_status`.
* `hold(run_id)` / `release(run_id)`: a POST for that run is received but not answered
  until released ("slow on command"; `hold_all()` holds every POST).
* `hold_each()` / `answer(waiting)`: every POST waits, listed in `waiting` in the order
  received, until the test answers that one POST: the test decides the order answers
  go out in, one at a time.
* `delay`: seconds each POST takes to answer (a slow Marquez, not a test's clock).
* `down()` / `up()`: stop listening (connections refused, open ones cut) and listen again
  on the same port: Marquez down, or flapping.

Every POST is recorded with the status it got (`posts`); the 201s are `stored`, in the
order they were answered. `in_flight` counts POSTs received and not yet answered, and
`in_flight_seconds` integrates it over time (the benches read the mean concurrency a
client keeps from it); `most_in_flight` is the highest `in_flight` seen. A POST
answered after its client hung up (it gave up waiting) is `abandoned`: stored all the
same, as Marquez stores an event whose client timed out.
`until()` waits for a condition on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LINEAGE = "/api/v1/lineage"
NAMESPACES = "/api/v1/namespaces"
_REASONS = {200: "OK", 201: "Created", 404: "Not Found", 500: "Internal Server Error"}


@dataclass
class Post:
    run_id: str
    event_type: str
    status: int
    event: dict[str, Any]
    abandoned: bool = False  # the client had hung up when the answer was ready


@dataclass
class Waiting:
    """A POST received and held until the test answers it (`MarquezStandin.answer`)."""

    run_id: str
    event_type: str
    go: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class MarquezStandin:
    host: str = "127.0.0.1"
    port: int = 0  # 0 until started, then kept across down() and up()
    url: str = ""
    post_status: int | None = None
    get_status: int = 200
    status_for: Callable[[dict[str, Any]], int | None] | None = None
    delay: float = 0.0
    posts: list[Post] = field(default_factory=list)
    received: list[str] = field(default_factory=list)  # run ids of POSTs as they arrive
    gets: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    waiting: list[Waiting] = field(default_factory=list)  # held one by one (`hold_each`)
    in_flight_seconds: float = 0.0  # the integral of `in_flight` over time, to `_since`
    _since: float = field(default_factory=time.perf_counter)
    _held: dict[str, asyncio.Event] = field(default_factory=dict)
    _hold_all: asyncio.Event | None = None
    _hold_each: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    # ---- control ------------------------------------------------------------------------

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def down(self) -> None:
        """Marquez is down: refuse connections and cut the open ones (same port on `up`)."""
        await self.stop()

    async def up(self) -> None:
        await self.start()

    async def stop(self) -> None:
        self.release_all()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def hold(self, run_id: str) -> None:
        self._held.setdefault(run_id, asyncio.Event())

    def release(self, run_id: str) -> None:
        event = self._held.pop(run_id, None)
        if event is not None:
            event.set()

    def hold_all(self) -> None:
        if self._hold_all is None:
            self._hold_all = asyncio.Event()

    def release_all(self) -> None:
        for run_id in list(self._held):
            self.release(run_id)
        if self._hold_all is not None:
            self._hold_all.set()
            self._hold_all = None
        self._hold_each = False
        for held in self.waiting:
            held.go.set()
        self.waiting.clear()

    def hold_each(self) -> None:
        """Hold every POST from now on until `answer` lets that one go."""
        self._hold_each = True

    def answer(self, held: Waiting) -> None:
        """Let one held POST be answered (it is recorded in `posts` once answered)."""
        self.waiting.remove(held)
        held.go.set()

    @property
    def stored(self) -> list[Post]:
        return [p for p in self.posts if 200 <= p.status < 300]

    def stored_count(self, answered: bool = False) -> Counter[tuple[str, str]]:
        """How many times each (run id, event type) was stored (`answered`: only the stores
        whose 201 reached a client still waiting for it)."""
        return Counter(
            (p.run_id, p.event_type) for p in self.stored if not (answered and p.abandoned)
        )

    def attempts(self, run_id: str) -> int:
        return sum(1 for p in self.posts if p.run_id == run_id)

    async def until(self, check: Callable[[], bool], within: float = 30.0) -> None:
        """Wait until `check()` holds; it is checked again after every request."""
        deadline = time.monotonic() + within
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"stand-in: condition not met; {len(self.posts)} POSTs answered, "
                    f"{len(self.stored)} stored, {self.gets} GETs"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def in_flight_integral(self) -> float:
        """`in_flight_seconds` brought up to now."""
        self._count_in_flight(0)
        return self.in_flight_seconds

    def _count_in_flight(self, change: int) -> None:
        now = time.perf_counter()
        self.in_flight_seconds += self.in_flight * (now - self._since)
        self._since = now
        self.in_flight += change
        self.most_in_flight = max(self.most_in_flight, self.in_flight)

    # ---- HTTP ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                self._count_in_flight(1)
                try:
                    status, payload = await self._answer(
                        method, target.split("?", 1)[0], body, reader
                    )
                finally:
                    self._count_in_flight(-1)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                    "\r\n".encode("latin-1")
                    + data
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(
        self, method: str, path: str, body: bytes, reader: asyncio.StreamReader
    ) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == NAMESPACES:
            self.gets += 1
            self._changed.set()
            return self.get_status, {"namespaces": []}
        if method != "POST" or path != LINEAGE:
            return 404, {"error": f"no route {method} {path}"}
        event = json.loads(body)
        run_id = str((event.get("run") or {}).get("runId", ""))
        self.received.append(run_id)
        self._changed.set()
        held = self._held.get(run_id)
        if held is not None:
            await held.wait()
        if self._hold_all is not None:
            await self._hold_all.wait()
        if self._hold_each:
            held_each = Waiting(run_id, str(event.get("eventType", "")))
            self.waiting.append(held_each)
            self._changed.set()
            await held_each.go.wait()
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow Marquez
        status = self.status_for(event) if self.status_for is not None else None
        if status is None:
            status = self.post_status if self.post_status is not None else 201
        gone = reader.at_eof()  # the client hung up while we took our time
        self.posts.append(Post(run_id, str(event.get("eventType", "")), status, event, gone))
        self._changed.set()
        if status >= 500:
            return status, {
                "code": status,
                "message": "ERROR: cannot execute INSERT in a read-only transaction",
            }
        return status, {}
