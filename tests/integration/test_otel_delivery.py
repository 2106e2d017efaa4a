"""The otel consumer's delivery path on real Kafka, into chdb.

* the commit protocol: a batch's `pending:<last>/<digest>` marker is committed at its
  first offset before its rows are inserted, and `<last>+1` with empty metadata after;
* flow control: a full batch pauses its partition until its flush has landed;
* shutdown: what is buffered is flushed and committed, and the group is left;
* two members: a second joins mid-stream, then the first dies with a batch in flight;
  every record is stored once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from consumers.librdkafka_consumer import metadata_text
from consumers.otel.backend import Backend, ChdbBackend
from consumers.otel.consumer import OtelConsumer, batch_digest
from consumers.otel.ddl import Table
from consumers.testkit import (
    create_topics,
    describe_group,
    produce,
    read_all,
    unique,
    wait_drained,
)
from tests.consumer_faults import (
    KINDS,
    StoreInFront,
    batch_consumer,
    finish,
    position,
    start,
    stored,
    wait_for,
)

pytestmark = pytest.mark.dataplane
KIND = KINDS["otel"]


@dataclass
class HeldStore(StoreInFront):
    """The real store, whose inserts wait until `release()`: a batch stays in flight."""

    waiting: int = 0
    _open: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    async def insert(self, table: Table, rows: Any, token: str) -> None:
        self.waiting += 1
        await self._open.wait()
        await self.inner.insert(table, rows, token)


async def commits(bootstrap: str, group: str) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets, with their metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return dict(await admin.list_consumer_group_offsets(group))
    finally:
        await admin.close()


async def committed_to(
    bootstrap: str, group: str, tp: TopicPartition, offset: int, within: float = 30
) -> OffsetAndMetadata:
    """Wait until `tp`'s committed offset is `offset`; what was committed."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        got = (await commits(bootstrap, group)).get(tp)
        if got is not None and got.offset == offset:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{tp} committed {got}, never {offset}")
        await asyncio.sleep(0.05)


@dataclass
class OnePartition:
    topic: str
    group: str

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, 0)


@pytest.fixture
async def one(env: dict[str, str]) -> OnePartition:
    t = OnePartition(unique("otel-delivery"), unique("otel-delivery-group"))
    await create_topics(env["KAFKA_BOOTSTRAP"], [t.topic], partitions=1)
    return t


def consumer(env: dict[str, str], t: OnePartition, store: Backend, **kw: Any) -> OtelConsumer:
    return batch_consumer(env, KIND, t.topic, t.group, store, **kw)


async def test_the_marker_is_committed_before_the_insert_and_the_end_after(
    env: dict[str, str], one: OnePartition, chdb: ChdbBackend
) -> None:
    """While a full batch's insert is in flight, its partition is paused and its marker
    (its last offset and its records' digest) is committed at its first offset; once
    the rows are in, the offset after its last, with the marker cleared, and the
    partition fetches again, and pauses again for the next full batch in flight."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    await produce(bootstrap, one.topic, KIND.records(10))
    records = await read_all(bootstrap, one.topic, expect=10, within=30)
    store = HeldStore(chdb)
    otel = consumer(env, one, store, max_batch_messages=10, max_batch_wait=3600)
    stop, task = start(otel)
    try:
        await wait_for(lambda: store.waiting > 0, "the batch's insert never started")
        kafka = otel._consumer
        assert kafka is not None
        assert kafka.paused() == {one.tp}, "a full batch in flight holds its partition"
        marker = (await commits(bootstrap, one.group))[one.tp]
        marker_text = metadata_text(marker.metadata)
        assert (marker.offset, marker_text) == (0, f"pending:9/{batch_digest(records)}")
        assert await stored(chdb, KIND) == (0, 0)

        store.release()
        done = await committed_to(bootstrap, one.group, one.tp, 10)
        assert done.metadata == ""
        assert await stored(chdb, KIND) == (10 * KIND.rows, 10 * KIND.rows)
        await wait_for(lambda: not kafka.paused(), "the partition was never resumed")
        # Fetching again: the next full batch holds the partition while it is in flight
        # (a pause forgotten at the resume would let batches pile up in memory).
        store.hold()
        inserts = store.waiting
        await produce(bootstrap, one.topic, KIND.records(10))
        await wait_for(lambda: store.waiting > inserts, "the next batch's insert never started")
        assert kafka.paused() == {one.tp}, "the next full batch in flight holds its partition"
        store.release()
        await committed_to(bootstrap, one.group, one.tp, 20)
    finally:
        store.release()
        await finish(stop, task)
    assert await stored(chdb, KIND) == (20 * KIND.rows, 20 * KIND.rows)


async def test_stopping_flushes_the_buffered_batch_commits_it_and_leaves_the_group(
    env: dict[str, str], one: OnePartition, chdb: ChdbBackend
) -> None:
    """The probe says the consumer is going (503, "down") while the last flush runs."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    await produce(bootstrap, one.topic, KIND.records(7))
    # Neither full nor old enough: only the shutdown can cut this batch.
    store = HeldStore(chdb)
    otel = consumer(env, one, store, max_batch_messages=1000, max_batch_wait=3600)
    stop, task = start(otel)
    try:
        await wait_for(lambda: otel._consumer is not None, "the consumer never started")
        kafka = otel._consumer
        assert kafka is not None
        await wait_for(lambda: one.tp in kafka.assignment(), "the partition was never assigned")
        deadline = asyncio.get_running_loop().time() + 30
        while await position(kafka, one.tp) < 7:  # fetched, so buffered in the batch
            assert asyncio.get_running_loop().time() < deadline, "the records were never read"
            await asyncio.sleep(0.05)
        assert one.tp not in await commits(bootstrap, one.group)
        assert otel.health.body() == (200, {"status": "ok"})
        stop.set()
        await wait_for(lambda: store.waiting > 0, "the shutdown never flushed the batch")
        assert otel.health.body() == (503, {"status": "down"})
    finally:
        store.release()
        await finish(stop, task)
    assert await stored(chdb, KIND) == (7 * KIND.rows, 7 * KIND.rows)
    last = (await commits(bootstrap, one.group))[one.tp]
    assert (last.offset, last.metadata) == (7, "")
    assert (await describe_group(bootstrap, one.group))[0] == "Empty", "the member left the group"


async def test_a_second_member_joins_then_the_first_dies_mid_batch_and_every_record_is_stored_once(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """The first member dies while one of its batches is in flight (its `pending:` marker
    committed, its insert not landed): the second replays that batch from the marker."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("otel-members"), unique("otel-members-group")
    await create_topics(bootstrap, [topic], partitions=3)
    await produce(bootstrap, topic, KIND.records(90))
    held = HeldStore(chdb)
    held.release()
    first = batch_consumer(env, KIND, topic, group, held, max_batch_messages=7)
    second = batch_consumer(env, KIND, topic, group, chdb, max_batch_messages=7)
    stop_first, first_task = start(first)
    stop_second: asyncio.Event | None = None
    second_task: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: first._consumer is not None, "the first member never started")
        kafka_first = first._consumer
        assert kafka_first is not None
        await wait_for(lambda: len(kafka_first.assignment()) == 3, "the first got no partitions")
        await wait_for(lambda: first.stats.get("batches") >= 2, "the first stored nothing")
        stop_second, second_task = start(second)
        await wait_for(lambda: second._consumer is not None, "the second member never started")
        kafka_second = second._consumer
        assert kafka_second is not None
        await wait_for(
            lambda: bool(kafka_second.assignment()) and len(kafka_first.assignment()) < 3,
            "the partitions were never shared",
            within=60,
        )
        held.hold()  # the first's next insert stays in flight
        inserts = held.waiting
        await produce(bootstrap, topic, KIND.records(90))  # for both members
        await wait_for(lambda: second.stats.get("batches") >= 1, "the second stored nothing")
        await wait_for(lambda: held.waiting > inserts, "no batch of the first went in flight")
        in_flight = {
            tp
            for tp, meta in (await commits(bootstrap, group)).items()
            if metadata_text(meta.metadata).startswith("pending:")
        }
        assert in_flight & kafka_first.assignment(), "the batch in flight has no marker"
        first.abort()  # dies mid-batch: its insert never lands, its end is never committed
        await finish(stop_first, first_task)
        await produce(bootstrap, topic, KIND.records(90))
        await wait_drained(bootstrap, group, [topic], within=90)
        assert len(kafka_second.assignment()) == 3
    finally:
        held.release()
        if not first_task.done():
            await finish(stop_first, first_task)
        if stop_second is not None and second_task is not None:
            await finish(stop_second, second_task)
    assert await stored(chdb, KIND) == (270 * KIND.rows, 270 * KIND.rows)
