"""One read of a namespace's runs at a time, shared by every live run list.

Each console tab streams its namespace's runs (server-sent events), and each stream
looks again every second. Reading the runs from the Kubernetes API and redacting their
URIs once per stream would make the API server's load grow with the number of open
tabs; here the streams of one namespace share one read: a stream asking while a read is
under way waits for that read, and a read younger than `fresh_for` answers every stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """What a stream sends for one read: the SSE event kind and its JSON body."""

    kind: str
    body: str


@dataclass
class _Read:
    at: float
    snapshot: Snapshot


class SharedReads:
    """Single-flight, briefly cached reads keyed by namespace."""

    def __init__(
        self,
        read: Callable[[str], Awaitable[Snapshot]],
        fresh_for: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._fresh_for = fresh_for
        self._clock = clock
        self._done: dict[str, _Read] = {}
        self._under_way: dict[str, asyncio.Future[Snapshot]] = {}

    async def get(self, namespace: str) -> Snapshot:
        now = self._clock()
        # Forget what no stream can use any more, so asking for many namespaces
        # leaves nothing behind.
        for stale in [ns for ns, r in self._done.items() if now - r.at >= self._fresh_for]:
            del self._done[stale]
        done = self._done.get(namespace)
        if done is not None:
            return done.snapshot
        under_way = self._under_way.get(namespace)
        if under_way is None:
            under_way = asyncio.ensure_future(self._read_once(namespace))
            self._under_way[namespace] = under_way
        # A stream that goes away must not cancel the read the others wait for.
        return await asyncio.shield(under_way)

    async def _read_once(self, namespace: str) -> Snapshot:
        try:
            snapshot = await self._read(namespace)
            self._done[namespace] = _Read(self._clock(), snapshot)
            return snapshot
        finally:
            del self._under_way[namespace]
