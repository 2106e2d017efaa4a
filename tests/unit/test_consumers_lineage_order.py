"""Which events of a partition the lineage consumer POSTs concurrently: every run whose
earlier events are done, while a run's own events go one at a time, in offset order; and
a fetched batch checked and queued a slice at a time, so workers POST meanwhile.

Against a real HTTP server on loopback (`tests.http_answers`), records dispatched as
the consumer's loop dispatches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from aiokafka import TopicPartition

from consumers.dlq import Record
from consumers.lineage.consumer import LineageConsumer
from consumers.offsets import OffsetTracker
from consumers.samples import lineage_bytes
from tests.helpers import wait_until_async
from tests.http_answers import Answering
from tests.unit.test_consumers_lineage_kinds import TP, Rec, consumer

LANES = 8


def runs_sharing_a_lane(count: int) -> list[str]:
    """Run ids that a key hash modulo `LANES` puts in one lane."""
    first = str(uuid.uuid4())
    out = [first]
    while len(out) < count:
        run = str(uuid.uuid4())
        if zlib.crc32(run.encode()) % LANES == zlib.crc32(first.encode()) % LANES:
            out.append(run)
    return out


async def stop(c: LineageConsumer) -> None:
    for part in list(c._parts.values()):
        await c._stop_workers(part)
    await c.marquez.aclose()


async def test_a_slow_run_holds_back_only_its_own_later_events() -> None:
    """The first event of run A is slow. Runs B and C (whose keys hash to A's lane, so
    fixed lanes queued them behind A) are stored meanwhile; A's second event waits
    until A's first is answered, and A's events arrive in offset order."""
    a, b, c_run = runs_sharing_a_lane(3)
    release = asyncio.Event()
    others_done = asyncio.Event()
    all_done = asyncio.Event()
    arrived: list[tuple[str, str]] = []

    async def handler(method: str, body: bytes) -> tuple[int, str]:
        event = json.loads(body)
        which = (event["run"]["runId"], event["eventType"])
        arrived.append(which)
        if which == (a, "START"):
            await release.wait()
        if sum(run in (b, c_run) for run, _ in arrived) == 4:
            others_done.set()
        if len(arrived) == len(order):
            all_done.set()
        return 201, "{}"

    order = [(a, "START"), (b, "START"), (a, "COMPLETE"), (c_run, "START")]
    order += [(b, "COMPLETE"), (c_run, "COMPLETE")]
    async with Answering(handler) as marquez:
        c, producer = consumer(marquez, lanes=LANES)
        try:
            records = [
                Rec(
                    value=lineage_bytes(run, kind, namespace="ns", job="j"),
                    offset=i,
                    key=run.encode(),
                )
                for i, (run, kind) in enumerate(order)
            ]
            await c._dispatch({TP: records})
            await asyncio.wait_for(others_done.wait(), 10)
            assert (a, "COMPLETE") not in arrived, "A's second event overtook its first"
            # A's two events are unfinished: nothing may be committed past A's first.
            assert c.tracker.to_commit() == {}
            release.set()
            await asyncio.wait_for(all_done.wait(), 10)
        finally:
            release.set()
            await stop(c)
    assert [kind for run, kind in arrived if run == a] == ["START", "COMPLETE"]
    assert [kind for run, kind in arrived if run == b] == ["START", "COMPLETE"]
    assert [kind for run, kind in arrived if run == c_run] == ["START", "COMPLETE"]
    assert producer.sent == []


async def test_queued_records_do_not_hold_their_parsed_events() -> None:
    """A record waiting for a worker keeps its bytes (they are what is POSTed), its
    verdict and its key, not the event parsed for the check: hundreds of parsed events
    held while Marquez is slow made every garbage collection walk them all."""
    release = asyncio.Event()

    async def handler(method: str, body: bytes) -> tuple[int, str]:
        await release.wait()
        return 201, "{}"

    runs = [str(uuid.uuid4()) for _ in range(200)]
    values = [lineage_bytes(run, "COMPLETE", namespace="ns", job="j") for run in runs]
    async with Answering(handler) as marquez:
        c, _ = consumer(marquez, lanes=LANES)
        try:
            gc.collect()
            before = len(gc.get_objects())
            records = [
                Rec(value=value, offset=offset, key=run.encode())
                for offset, (run, value) in enumerate(zip(runs, values, strict=True))
            ]
            await c._dispatch({TP: records})
            gc.collect()
            held = len(gc.get_objects()) - before
        finally:
            release.set()
            await stop(c)
    parsed = len(list(_containers(json.loads(values[0]))))
    assert parsed > 10  # a parsed event is many objects the collector tracks
    # Far less than half a parsed event per queued record (the record, its verdict, ...).
    assert held < len(runs) * parsed // 2, f"{held} objects held by {len(runs)} queued records"


def _containers(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _containers(child)
    elif isinstance(value, list):
        yield value
        for child in value:
            yield from _containers(child)


def started_runs(count: int, partition: int = 0) -> tuple[list[str], list[Rec]]:
    runs = [str(uuid.uuid4()) for _ in range(count)]
    records = [
        Rec(
            value=lineage_bytes(run, "START", namespace="ns", job="j"),
            offset=i,
            key=run.encode(),
            partition=partition,
        )
        for i, run in enumerate(runs)
    ]
    return runs, records


async def test_workers_post_while_a_fetched_batch_is_still_being_queued() -> None:
    """The first POST leaves before the batch's last slice is queued: checking a whole
    fetch in one go kept every worker from its next POST meanwhile."""
    started_at_first_post: list[int] = []
    _, records = started_runs(40)

    async def handler(method: str, body: bytes) -> tuple[int, str]:
        if not started_at_first_post:
            started_at_first_post.append(c.tracker.in_flight(TP))
        return 201, "{}"

    async with Answering(handler) as marquez:
        c, _ = consumer(marquez, lanes=2)
        c.s.dispatch_slice = 4
        try:
            await c._dispatch({TP: records})
            assert c.tracker.in_flight(TP) <= len(records)
            await wait_until_async(lambda: c.tracker.to_commit() == {TP: len(records)}, within=30)
        finally:
            await stop(c)
    assert started_at_first_post and started_at_first_post[0] < len(records)


class HeldMarquez:
    """Marquez answering each POST only once released; `posted`: the run ids stored."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.posted: list[str] = []

    async def answer(self, method: str, body: bytes) -> tuple[int, str]:
        await self.release.wait()
        self.posted.append(json.loads(body)["run"]["runId"])
        return 201, "{}"


@contextlib.asynccontextmanager
async def held_slices(held: HeldMarquez) -> AsyncIterator[LineageConsumer]:
    """A consumer with 2 workers queuing 4 records a slice, storing in `held`; at the
    end Marquez is released and the workers stopped."""
    async with Answering(held.answer) as marquez:
        c, _ = consumer(marquez, lanes=2)
        c.s.dispatch_slice = 4
        try:
            yield c
        finally:
            held.release.set()
            await stop(c)


TP_B = TopicPartition(TP.topic, 1)


class WatchedTracker(OffsetTracker[TopicPartition]):
    """The consumer's offset tracker, noting each record started on a partition it had
    forgotten (a revoked partition: nobody waits for, commits or finishes that record)."""

    def __init__(self) -> None:
        super().__init__()
        self.forgotten: set[TopicPartition] = set()
        self.started_forgotten: list[tuple[TopicPartition, int]] = []

    def started(self, tp: TopicPartition, offset: int) -> None:
        if tp in self.forgotten:
            self.started_forgotten.append((tp, offset))
        super().started(tp, offset)

    def forget(self, tp: TopicPartition) -> None:
        self.forgotten.add(tp)
        super().forget(tp)


async def revoke_during_a_fetch(
    c: LineageConsumer, fetch: dict[TopicPartition, list[Rec]]
) -> tuple[asyncio.Task[None], dict[TopicPartition, int]]:
    """Dispatch `fetch` as the loop does; its partitions are revoked while the first
    slice of the first one is queued. Returns the revoke and how many records of each
    partition were started before it began."""
    queue = c._queue
    revoking: list[asyncio.Task[None]] = []
    before: dict[TopicPartition, int] = {}

    def queue_then_revoke(part: Any, some: Sequence[Record]) -> None:
        queue(part, some)
        if not revoking:
            before.update({tp: c.tracker.in_flight(tp) for tp in fetch})
            revoking.append(asyncio.create_task(c._revoked(set(fetch))))

    c._queue = queue_then_revoke  # type: ignore[method-assign,assignment]
    try:
        await c._dispatch(fetch)
    finally:
        c._queue = queue  # type: ignore[method-assign]
    return revoking[0], before


async def test_a_partition_revoked_between_slices_starts_none_of_the_rest() -> None:
    """A revoke arriving while a batch is queued a slice at a time: the records already
    started are stored and committed before the partition goes; the rest is never started
    (the next owner reads it from the commit), so the revoke waits for no more of them."""
    held = HeldMarquez()
    runs, records = started_runs(40)
    async with held_slices(held) as c:
        revoke, before = await revoke_during_a_fetch(c, {TP: records})
        started = c._parts[TP].last_offset + 1
        held.release.set()
        await asyncio.wait_for(revoke, 30)
    assert started == before[TP] < len(records), "the whole batch was started"
    assert sorted(held.posted) == sorted(runs[:started])
    assert TP not in c._parts and not c.tracker.total_in_flight()


async def test_a_partition_first_seen_in_a_fetch_being_revoked_starts_none_of_it() -> None:
    """One fetch of partitions A and B; both are revoked while A's first slice is queued.
    B had no records in this consumer yet, so no part of B was there to be marked: none of
    B is started all the same (its whole batch was, and the revocation waited for it),
    and no record of B reaches Marquez before the revocation ends. Read again from the
    commit, as the next assignment does, every event is stored once."""
    held = HeldMarquez()
    runs_a, records_a = started_runs(40)
    runs_b, records_b = started_runs(400, partition=TP_B.partition)
    async with held_slices(held) as c:
        revoke, before = await revoke_during_a_fetch(c, {TP: records_a, TP_B: records_b})
        started = {tp: c.tracker.in_flight(tp) for tp in (TP, TP_B)}
        held.release.set()
        await asyncio.wait_for(revoke, 30)
        assert before == {TP: 4, TP_B: 0}
        assert started == before, "records were started after the revocation began"
        assert sorted(held.posted) == sorted(runs_a[:4])
        assert not c._parts and not c.tracker.partitions()
        # The partitions come back: each is read from its commit (A's covers 4 records).
        await c._dispatch({TP: records_a[4:], TP_B: records_b})
        await wait_until_async(lambda: len(held.posted) == 440, within=30)
    assert sorted(held.posted) == sorted(runs_a + runs_b), "lost or doubled"


async def test_nothing_is_started_on_a_partition_forgotten_when_its_revoke_timed_out() -> None:
    """Marquez holds every POST, so revoking A and B gives up waiting for A's first
    slice and forgets both partitions while the fetch is still being dispatched: no
    record of that fetch is started on them afterwards (offsets the tracker would hold
    for ever, and that a later assignment of the partition would find started twice)."""
    held = HeldMarquez()
    _, records_a = started_runs(40)
    runs_b, records_b = started_runs(10_000, partition=TP_B.partition)
    async with held_slices(held) as c:
        c.s.revoke_timeout = 0  # gives up after one look at the unfinished records
        tracker = c.tracker = WatchedTracker()
        revoke, _ = await revoke_during_a_fetch(c, {TP: records_a, TP_B: records_b})
        await asyncio.wait_for(revoke, 30)
        assert tracker.forgotten == {TP, TP_B}
        assert held.posted == []  # it gave up with A's first slice unfinished
    assert tracker.started_forgotten == []
    assert not c._parts and not tracker.partitions()
    assert not set(held.posted) & set(runs_b)
