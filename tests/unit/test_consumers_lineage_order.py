"""Which events of a partition the lineage consumer POSTs concurrently: every run whose
earlier events are done, while a run's own events go one at a time, in offset order; and
a fetched batch checked and queued a slice at a time, so workers POST meanwhile.

Against a real HTTP server on loopback (`tests.http_answers`), records dispatched as
the consumer's loop dispatches them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from consumers.dlq import Record
from consumers.lineage.consumer import LineageConsumer
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
            await c._dispatch_batch(TP, records)
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
            await c._dispatch_batch(TP, records)
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


def started_runs(count: int) -> tuple[list[str], list[Rec]]:
    runs = [str(uuid.uuid4()) for _ in range(count)]
    records = [
        Rec(value=lineage_bytes(run, "START", namespace="ns", job="j"), offset=i, key=run.encode())
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
            await c._dispatch_batch(TP, records)
            assert c.tracker.in_flight(TP) <= len(records)
            await wait_until_async(lambda: c.tracker.to_commit() == {TP: len(records)}, within=30)
        finally:
            await stop(c)
    assert started_at_first_post and started_at_first_post[0] < len(records)


async def test_a_partition_revoked_between_slices_starts_none_of_the_rest() -> None:
    """A revoke arriving while a batch is queued a slice at a time: the records already
    started are stored and committed before the partition goes; the rest is never started
    (the next owner reads it from the commit), so the revoke waits for no more of them."""
    release = asyncio.Event()
    posted: list[str] = []

    async def handler(method: str, body: bytes) -> tuple[int, str]:
        await release.wait()
        posted.append(json.loads(body)["run"]["runId"])
        return 201, "{}"

    runs, records = started_runs(40)
    revoking: list[asyncio.Task[None]] = []
    async with Answering(handler) as marquez:
        c, _ = consumer(marquez, lanes=2)
        c.s.dispatch_slice = 4
        queue = c._queue

        def queue_then_revoke(part: Any, some: Sequence[Record]) -> None:
            queue(part, some)
            if not revoking:  # the revoke comes while the first slice is queued
                revoking.append(asyncio.create_task(c._revoked({TP})))

        c._queue = queue_then_revoke  # type: ignore[method-assign,assignment]
        try:
            await c._dispatch_batch(TP, records)
            started = c._parts[TP].last_offset + 1
            release.set()
            await asyncio.wait_for(revoking[0], 30)
        finally:
            release.set()
            await stop(c)
    assert started < len(records), "the whole batch was started"
    assert sorted(posted) == sorted(runs[:started])
    assert TP not in c._parts and not c.tracker.total_in_flight()
