"""The console's live run lists share reads: one read of a namespace at a time, reused
while fresh, never cancelled by a stream that leaves, and nothing kept for namespaces
no stream asks for any more."""

from __future__ import annotations

import asyncio

import pytest

from gateway.run_feed import SharedReads, Snapshot


class Reads:
    """A read of runs that waits until the test lets it finish, counting reads."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.release = asyncio.Event()

    async def __call__(self, namespace: str) -> Snapshot:
        self.count[namespace] = self.count.get(namespace, 0) + 1
        n = self.count[namespace]
        await self.release.wait()
        return Snapshot("runs", f"{namespace} read {n}")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_streams_asking_at_once_share_one_read() -> None:
    reads = Reads()
    shared = SharedReads(reads, fresh_for=0.5, clock=Clock())
    streams = [asyncio.create_task(shared.get("team-a")) for _ in range(20)]
    await asyncio.sleep(0)
    reads.release.set()
    got = await asyncio.gather(*streams)
    assert reads.count == {"team-a": 1}
    assert {s.body for s in got} == {"team-a read 1"}


async def test_a_fresh_read_answers_and_a_stale_one_is_read_again() -> None:
    reads, clock = Reads(), Clock()
    reads.release.set()
    shared = SharedReads(reads, fresh_for=0.5, clock=clock)
    assert (await shared.get("team-a")).body == "team-a read 1"
    clock.now += 0.49
    assert (await shared.get("team-a")).body == "team-a read 1"
    clock.now += 0.01
    assert (await shared.get("team-a")).body == "team-a read 2"
    # Namespaces are read apart.
    assert (await shared.get("team-b")).body == "team-b read 1"
    assert reads.count == {"team-a": 2, "team-b": 1}


async def test_a_stream_that_leaves_does_not_cancel_the_read_others_wait_for() -> None:
    reads = Reads()
    shared = SharedReads(reads, fresh_for=0.5, clock=Clock())
    leaving = asyncio.create_task(shared.get("team-a"))
    staying = asyncio.create_task(shared.get("team-a"))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    reads.release.set()
    assert (await staying).body == "team-a read 1"
    assert reads.count == {"team-a": 1}


async def test_a_failed_read_reaches_every_waiter_and_the_next_ask_reads_again() -> None:
    calls = 0

    async def failing(namespace: str) -> Snapshot:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError(f"read {calls} failed")

    shared = SharedReads(failing, fresh_for=0.5, clock=Clock())
    results = await asyncio.gather(
        shared.get("team-a"), shared.get("team-a"), return_exceptions=True
    )
    assert [str(r) for r in results] == ["read 1 failed", "read 1 failed"]
    with pytest.raises(RuntimeError, match="read 2 failed"):
        await shared.get("team-a")


async def test_reads_of_namespaces_nobody_asks_for_any_more_are_forgotten() -> None:
    reads, clock = Reads(), Clock()
    reads.release.set()
    shared = SharedReads(reads, fresh_for=0.5, clock=clock)
    for n in range(1000):
        await shared.get(f"ns-{n}")
    clock.now += 0.5
    await shared.get("ns-last")
    assert list(shared._done) == ["ns-last"]
