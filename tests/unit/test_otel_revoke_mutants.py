"""The otel consumer's revoke listener (`_revoked`) on its own, without Kafka: what it
waits for and what it leaves behind.

aiokafka calls the listener before the group moves the partitions; whatever the listener
keeps of a partition it no longer owns is wrong from then on: a stale partition kept in
the batch table (re-flushed, counted in the lag), a degraded health reason no one will
clear, a paused or rewind count that a later assignment inherits.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from consumers.librdkafka_consumer import LibrdkafkaConsumer
from consumers.otel.consumer import _Partition
from tests.consumer_faults import wait_for
from tests.unit.test_otel_consumer_mutants import TOPIC, TP, Rig, good, rig

__all__ = ["rig"]  # the fixture, for pytest
KEPT = TP._replace(partition=1)  # a partition that stays ours
# Revoked while a rewind was installing it again (out of the batch table meanwhile).
GONE = TP._replace(partition=2)


async def in_flight(rig: Rig, tp: TopicPartition, gate: asyncio.Event) -> _Partition:
    """A partition whose batch is being flushed (already waiting) until `gate` is set."""
    part = rig.otel._parts[tp]
    waiting = asyncio.Event()
    part.flushing = asyncio.create_task(_held(waiting, gate))
    await waiting.wait()
    return part


async def _held(waiting: asyncio.Event, gate: asyncio.Event) -> bool:
    waiting.set()
    await gate.wait()
    return True


def troubled(rig: Rig) -> None:
    """The partitions paused, rewound, degraded and lagging, as after a store outage."""
    otel = rig.otel
    for tp in (TP, KEPT, GONE):
        otel._paused.add(tp)
        otel._rewinds[tp] = 2
        otel.health.degrade(otel._source(tp), f"{tp.partition}: clickhouse refuses inserts")
        otel.stats.set_lag(tp.topic, tp.partition, 7)


async def test_a_revoked_partition_leaves_nothing_of_it_behind(rig: Rig) -> None:
    otel = rig.otel
    rig.batch(good(2))
    otel._parts[KEPT] = _Partition(KEPT, type(otel._parts[TP].batch)(KEPT))
    troubled(rig)
    await asyncio.wait_for(otel._revoked({TP, GONE}), 30)
    assert set(otel._parts) == {KEPT}, "the revoked partition's batch is still kept"
    assert otel._paused == {KEPT}
    assert otel._rewinds == {KEPT: 2}
    assert list(otel.health.reasons) == [otel._source(KEPT)], "a revoked partition's reason"
    assert otel.stats.lag == {(TOPIC, 1): 7}


async def test_revoking_waits_for_the_batch_in_flight_to_land(rig: Rig) -> None:
    """A flush that lands within the revoke timeout is waited for, not cancelled: its
    commit saves the next owner a replay. Once it has landed the rebalance goes on (the
    timeout is for a flush that does not land)."""
    otel = rig.otel
    otel.s.revoke_timeout = 3600
    rig.batch(good(2))
    gate = asyncio.Event()
    part = await in_flight(rig, TP, gate)
    # The listener looks at the flush before the flush sees the gate open (asyncio runs
    # ready callbacks in order): it must wait for it, not cancel it.
    revoking = asyncio.create_task(otel._revoked({TP}))
    gate.set()
    await asyncio.wait_for(revoking, 30)
    assert part.flushing is not None and not part.flushing.cancelled()
    assert part.flushing.result() is True
    assert TP not in otel._parts


async def test_revoking_gives_a_stuck_flush_the_revoke_timeout_then_cancels_it(rig: Rig) -> None:
    otel = rig.otel
    otel.s.revoke_timeout = 0.2
    rig.batch(good(2))
    part = await in_flight(rig, TP, asyncio.Event())
    await asyncio.wait_for(otel._revoked({TP}), 30)
    assert part.flushing is not None
    await wait_for(part.flushing.done, "the stuck flush was never cancelled")
    assert part.flushing.cancelled()
    assert TP not in otel._parts


class _OneMember:
    """The consumer's assignment as the group has it: `assigned` until revoked."""

    def __init__(self) -> None:
        self.assigned = {TP}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        raise AssertionError(f"seek of {tp} at {offset}: not ours any more")


class _HeldOffsets:
    """The group's committed offsets, answered only when the test says so."""

    def __init__(self) -> None:
        self.asked, self.release = asyncio.Event(), asyncio.Event()

    async def list_consumer_group_offsets(self, group: str, partitions: Any) -> dict[Any, Any]:
        self.asked.set()
        await self.release.wait()
        return {}


async def test_a_partition_revoked_while_a_rewind_installs_it_is_not_put_back(rig: Rig) -> None:
    """A rewind takes its partition out of the batch table and reads the group's offsets
    to install it again; the group revokes the partition meanwhile. When the read
    answers, the install must leave the partition out, and the record fetched before
    the revoke (waiting in `_early`) must not be batched."""
    otel = rig.otel
    member, offsets = _OneMember(), _HeldOffsets()
    otel._consumer, otel._admin = cast(LibrdkafkaConsumer, member), offsets
    rig.batch(good(1))
    del otel._parts[TP]  # as `_recover` does before installing again
    install = asyncio.create_task(otel._install({TP}))
    await asyncio.wait_for(offsets.asked.wait(), 30)
    early = ConsumerRecord(TOPIC, TP.partition, 1, 0, 0, b"k", good(1)[0], None, 1, 0, [])
    otel._early.setdefault(TP, []).append(early)
    member.assigned = set()
    await asyncio.wait_for(otel._revoked({TP}), 30)
    offsets.release.set()
    assert await asyncio.wait_for(install, 30) == set()
    assert TP not in otel._parts, "a partition no longer ours was installed again"
    assert TP not in otel._early and TP not in otel._installing
