"""The otel consumer's rewind racing a rebalance, on real Kafka into chdb.

A failed flush rewinds its partition (`_recover`): it installs the partition again, reading
its commit metadata as a rebalance's install does. A rebalance can assign the partition
again while that read is on its way; the install started last must decide where the
partition starts and which records it keeps. Each race is driven by holding the group's
offsets reads at the admin client (the real one, answered by Kafka once let through).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import consumers.otel.consumer as otel_consumer
from consumers.librdkafka_consumer import CommitFailed
from consumers.otel.backend import ChdbBackend
from consumers.testkit import create_topics, produce, unique, wait_drained
from tests.consumer_faults import (
    KINDS,
    batch_consumer,
    finish,
    refuse_first_commit,
    start,
    stored,
    wait_for,
    watch_fetches,
)

pytestmark = pytest.mark.dataplane
KIND = KINDS["otel"]


@dataclass
class Gate:
    """One held read: `arrived` once it is waiting, let through by `open`."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    open: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class HeldReads:
    """The group's next `limit` offsets reads once armed, each held at its own gate."""

    group: str
    limit: int
    armed: bool = False
    gates: list[Gate] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = AIOKafkaAdminClient.list_consumer_group_offsets
        reads = self

        async def held(self: AIOKafkaAdminClient, group_id: str, **kw: Any) -> Any:
            if group_id == reads.group and reads.armed and len(reads.gates) < reads.limit:
                gate = Gate()
                reads.gates.append(gate)
                gate.arrived.set()
                await gate.open.wait()
            return await real(self, group_id, **kw)

        monkeypatch.setattr(AIOKafkaAdminClient, "list_consumer_group_offsets", held)

    async def arrived(self, n: int) -> Gate:
        """The n-th held read (from 0), once it waits."""
        await wait_for(lambda: len(self.gates) > n, f"offsets read {n} never came", within=60)
        return self.gates[n]


async def test_a_rebalance_during_a_rewinds_install_keeps_the_records_fetched_meanwhile(
    env: dict[str, str], chdb: ChdbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition with no commit yet: its first flush fails at the marker commit, so the
    partition is rewound. While the rewind reads the commit metadata, a member joins the
    group (for another topic): the rebalance assigns us the partition again and reads the
    metadata too. The rewind's read ends first, and the rewind is over; records produced
    then do not come out while the rebalance's read is on its way (librdkafka hands out
    none of an assignment before its callback, which waits for the install, returns).
    Had they come out and been batched into the partition the rewind installed, the
    rebalance's install would replace it; with no commit to seek back to, nothing would
    read them again and later commits would pass them: lost. (Lost only while buffered:
    the test keeps batches from being cut meanwhile.)"""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, other, group = unique("otel-race"), unique("otel-race-other"), unique("otel-race-g")
    await create_topics(bootstrap, [topic, other], partitions=1)
    tp = TopicPartition(topic, 0)
    reads = HeldReads(group, limit=2)
    reads.install(monkeypatch)
    fetched = watch_fetches(monkeypatch, topic)
    otel = batch_consumer(env, KIND, topic, group, chdb, max_batch_messages=1000)
    stop, task = start(otel)
    member: AIOKafkaConsumer | None = None
    try:
        await wait_for(lambda: tp in otel._parts, "the partition was never installed", 60)
        refused = refuse_first_commit(otel)
        reads.armed = True
        await produce(bootstrap, topic, KIND.records(5))  # one batch, cut by time
        rewind = await reads.arrived(0)
        assert refused, "the rewind started without the marker commit failing"
        rewinding = otel._recovery
        assert rewinding is not None
        otel.s.max_batch_wait = 3600  # what is read from now on stays buffered

        member = AIOKafkaConsumer(
            other, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await member.start()
        rebalance = await reads.arrived(1)

        rewind.open.set()
        await asyncio.wait_for(rewinding, 60)  # the rewind is over; the rebalance's read is not
        fetched.clear()
        await produce(bootstrap, topic, KIND.records(5))
        await asyncio.sleep(1.0)  # time for a fetch to bring them, were any let out
        assert not fetched.is_set(), "records came out while the rebalance's install read"
        rebalance.open.set()
        reads.armed = False
        await asyncio.wait_for(fetched.wait(), 60)

        otel.s.max_batch_wait = 0.3
        await produce(bootstrap, topic, KIND.records(5))
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        for gate in reads.gates:
            gate.open.set()
        if member is not None:
            await member.stop()
        await finish(stop, task)
    assert await stored(chdb, KIND) == (15 * KIND.rows, 15 * KIND.rows)


class RewindHeld:
    """asyncio as the consumer's module sees it, except that the next rewind's backoff
    (the sleep in `_recover`, before it checks whether the partition is still the one it
    set out to rewind) waits at `gate` first."""

    def __init__(self) -> None:
        self.armed = False
        self.gate = Gate()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        task = asyncio.current_task()
        coro = task.get_coro() if task is not None else None
        if self.armed and getattr(coro, "__qualname__", "") == "OtelConsumer._recover":
            self.armed = False
            self.gate.arrived.set()
            await self.gate.open.wait()
        return await asyncio.sleep(delay, result)


async def test_a_rewind_leaves_alone_the_partition_a_rebalance_installed_meanwhile(
    env: dict[str, str], chdb: ChdbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch cut by time fails at its marker commit, so its partition is to be rewound;
    before the rewind starts, a member joins the group (for another topic) and the
    rebalance assigns us the partition again: that install reads the same batch again and
    flushes it (held at its marker commit). Had the rewind installed the partition once
    more, it would read the commit without that batch's marker and batch the records as
    they come now, with the ones produced since: other bounds, another token, and the
    first batch's rows stored twice (and its late commit could pass the second's)."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, other, group = unique("otel-race2"), unique("otel-race2-other"), unique("otel-race2-g")
    await create_topics(bootstrap, [topic, other], partitions=1)
    held = RewindHeld()
    monkeypatch.setattr(otel_consumer, "asyncio", held)
    otel = batch_consumer(env, KIND, topic, group, chdb, max_batch_messages=10)
    stop, task = start(otel)
    member: AIOKafkaConsumer | None = None
    marker = Gate()
    try:
        await produce(bootstrap, topic, KIND.records(3))
        await wait_drained(bootstrap, group, [topic], within=60)
        kafka = otel._consumer
        assert kafka is not None
        real_commit = kafka.commit
        calls: list[object] = []

        async def failing_then_held(offsets: Any = None) -> Any:
            calls.append(offsets)
            if len(calls) == 1:
                raise CommitFailed("the group's coordinator went away")
            if len(calls) == 2:
                marker.arrived.set()
                await marker.open.wait()
            return await real_commit(offsets)

        kafka.commit = failing_then_held  # type: ignore[method-assign]
        held.armed = True
        await produce(bootstrap, topic, KIND.records(5))  # one batch, cut by time
        await asyncio.wait_for(held.gate.arrived.wait(), 60)
        rewind = otel._recovery
        assert rewind is not None

        member = AIOKafkaConsumer(
            other, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await member.start()
        await asyncio.wait_for(marker.arrived.wait(), 60)  # the new install's flush
        await produce(bootstrap, topic, KIND.records(5))

        held.gate.open.set()
        await asyncio.wait_for(rewind, 60)
        marker.open.set()
        await wait_drained(bootstrap, group, [topic], within=60)
    finally:
        held.gate.open.set()
        marker.open.set()
        if member is not None:
            await member.stop()
        await finish(stop, task)
    assert await stored(chdb, KIND) == (13 * KIND.rows, 13 * KIND.rows)
