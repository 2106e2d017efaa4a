"""`LibrdkafkaConsumer` against the real broker: what the batch consumer relies on from
it, each on its own (the consumer's whole loop: test_otel_delivery*.py).

Records are numbered by their value so a test can say which came out, how often, and in
what order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from consumers.librdkafka_consumer import (
    CommitFailed,
    FetchedRecord,
    LibrdkafkaConsumer,
    consumer_config,
    metadata_text,
)
from consumers.testkit import create_topics, produce, unique
from tests.helpers import librdkafka_threads
from tests.integration.test_otel_delivery import commits

pytestmark = pytest.mark.dataplane


class Listener:
    """Records what the group says; `on_revoke` runs in the revoke, before it returns."""

    def __init__(self) -> None:
        self.assigned: list[set[TopicPartition]] = []
        self.revoked: list[set[TopicPartition]] = []
        self.on_revoke: Callable[[set[TopicPartition]], Awaitable[None]] | None = None
        self.fail_assign = False

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.append(assigned)
        if self.fail_assign:
            raise RuntimeError("a listener's bug")

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked.append(revoked)
        if self.on_revoke is not None:
            await self.on_revoke(revoked)


class Member:
    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.topic = topic
        self.tp = TopicPartition(topic, 0)
        self.group = group
        self.listener = Listener()
        self.kafka = LibrdkafkaConsumer(consumer_config(bootstrap, group, "test-librdkafka"))

    async def start(self) -> None:
        await self.kafka.start()
        self.kafka.subscribe([self.topic], self.listener)

    async def assigned(self, within: float = 30) -> list[int]:
        """Poll until the group has assigned the partition (librdkafka runs its callbacks
        inside a poll); the numbers of the records that came out meanwhile."""
        numbers: list[int] = []
        deadline = asyncio.get_running_loop().time() + within
        while not self.listener.assigned:
            assert asyncio.get_running_loop().time() < deadline, "never assigned"
            got = await self.kafka.getmany(timeout_ms=100, max_records=1)
            numbers += [number(r) for r in got.get(self.tp, [])]
        return numbers

    async def fetch(self, within: float = 30) -> list[FetchedRecord]:
        """One `getmany` that brings records (or none within `within` seconds)."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            got = await self.kafka.getmany(timeout_ms=100, max_records=5)
            if got:
                return got.get(self.tp, [])
        return []

    async def until(self, count: int, within: float = 30) -> list[int]:
        """Fetch until `count` records came out; their numbers, in order."""
        numbers: list[int] = []
        deadline = asyncio.get_running_loop().time() + within
        while len(numbers) < count and asyncio.get_running_loop().time() < deadline:
            got = await self.kafka.getmany(timeout_ms=100, max_records=5)
            numbers += [number(r) for r in got.get(self.tp, [])]
        return numbers


def number(record: FetchedRecord) -> int:
    assert record.value is not None
    return int(record.value)


def numbered(first: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    return [(b"k", str(i).encode()) for i in range(first, first + count)]


@pytest.fixture
async def one(env: dict[str, str]) -> AsyncIterator[Member]:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("rdk-consumer")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, numbered(0, 20))
    member = Member(bootstrap, topic, unique("rdk-consumer-group"))
    await member.start()
    try:
        yield member
    finally:
        await member.kafka.stop()


async def test_records_come_out_in_order_with_the_producers_key_and_headers(
    one: Member,
) -> None:
    numbers = await one.until(20)
    assert numbers == list(range(20))
    assert one.listener.assigned == [{one.tp}]
    assert one.kafka.assignment() == {one.tp}
    assert one.kafka.highwater(one.tp) == 20
    assert await one.kafka.position(one.tp) == 20


async def test_a_paused_partitions_records_are_held_and_come_out_once_after_the_resume(
    one: Member,
) -> None:
    """A pause made while a fetch is under way: what that fetch brings is held, none is
    lost (librdkafka's position is past them) and none comes out twice."""
    first = await one.fetch()
    assert [number(r) for r in first] == list(range(5))
    fetching = asyncio.create_task(one.kafka.getmany(timeout_ms=100, max_records=5))
    await asyncio.sleep(0)  # its fetch is asked for, and brings records
    one.kafka.pause(one.tp)
    assert (await fetching) == {}, "records of a paused partition came out"
    assert one.kafka.paused() == {one.tp}
    for _ in range(5):
        assert await one.kafka.getmany(timeout_ms=100, max_records=5) == {}
    one.kafka.resume(one.tp)
    assert await one.until(15) == list(range(5, 20))


async def test_after_a_seek_nothing_fetched_before_it_comes_out(one: Member) -> None:
    """A seek made while a fetch is under way: what it brings is dropped, and the
    partition starts again at the offset sought."""
    assert [number(r) for r in await one.fetch()] == list(range(5))
    fetching = asyncio.create_task(one.kafka.getmany(timeout_ms=100, max_records=5))
    await asyncio.sleep(0)  # its fetch is asked for, and brings records
    one.kafka.seek(one.tp, 2)
    assert (await fetching) == {}, "records fetched before the seek came out"
    assert await one.until(18) == list(range(2, 20))


async def committed(bootstrap: str, member: Member) -> tuple[int, str]:
    """The group's commit of the member's partition, offset and metadata, as another
    client reads it (librdkafka's own read stops at a NUL)."""
    meta = (await commits(bootstrap, member.group))[member.tp]
    return int(meta.offset), str(meta.metadata)


async def test_a_commit_keeps_its_metadata_and_a_partition_not_ours_is_refused(
    env: dict[str, str], one: Member
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    await one.until(20)
    await one.kafka.commit({one.tp: OffsetAndMetadata(3, "pending:9/abc")})
    offset, sent = await committed(bootstrap, one)
    assert (offset, metadata_text(sent)) == (3, "pending:9/abc")
    assert sent in ("pending:9/abc", "pending:9/abc\x00")  # the binding's NUL, or none
    await one.kafka.commit({one.tp: OffsetAndMetadata(20, "")})
    assert await committed(bootstrap, one) == (20, ""), "none must read back empty, not a NUL"
    with pytest.raises(CommitFailed, match="not assigned"):
        await one.kafka.commit({TopicPartition(one.topic, 7): OffsetAndMetadata(1, "")})


async def test_the_revoke_waits_for_the_listener_and_its_commits_go_through(
    env: dict[str, str],
) -> None:
    """The listener commits in the revoke (as a flush finishing then does): librdkafka
    holds up a commit from any thread but the callback's, so it is made there; the
    member leaving the group (`stop`) waits for it, and the group has it."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("rdk-revoke"), unique("rdk-revoke-group")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, numbered(0, 4))
    member = Member(bootstrap, topic, group)

    async def commit_then_finish(revoked: set[TopicPartition]) -> None:
        await asyncio.sleep(0.2)  # the revoke waits
        await member.kafka.commit({member.tp: OffsetAndMetadata(4, "pending:7/digest")})

    member.listener.on_revoke = commit_then_finish
    await member.start()
    assert await member.until(4) == [0, 1, 2, 3]
    await asyncio.wait_for(member.kafka.stop(), 30)
    assert member.listener.revoked == [{member.tp}]
    again = Member(bootstrap, topic, group)
    await again.start()
    try:
        await again.assigned()
        offset, sent = await committed(bootstrap, again)
    finally:
        await again.kafka.stop()
    assert (offset, metadata_text(sent)) == (4, "pending:7/digest")


async def test_a_failing_listener_is_logged_and_the_member_goes_on(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("rdk-failing")
    await create_topics(bootstrap, [topic], partitions=1)
    await produce(bootstrap, topic, numbered(0, 3))
    member = Member(bootstrap, topic, unique("rdk-failing-group"))
    member.listener.fail_assign = True
    caplog.set_level(logging.ERROR, "consumers.librdkafka_consumer")
    await member.start()
    try:
        assert await member.until(3) == [0, 1, 2]
    finally:
        await member.kafka.stop()
    assert any("rebalance listener failed" in r.message for r in caplog.records)


async def test_a_cancelled_fetch_loses_nothing(one: Member) -> None:
    """`getmany` cancelled while its fetch is under way (librdkafka's position moves past
    what it brings): the next call hands those records out."""
    early = await one.assigned()
    fetching = asyncio.create_task(one.kafka.getmany(timeout_ms=2000, max_records=5))
    await asyncio.sleep(0)
    fetching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetching
    assert early + await one.until(20 - len(early)) == list(range(20))


async def test_stop_ends_the_clients_threads(env: dict[str, str]) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("rdk-stop")
    await create_topics(bootstrap, [topic], partitions=1)
    before = librdkafka_threads()
    member = Member(bootstrap, topic, unique("rdk-stop-group"))
    await member.start()
    await member.assigned()
    assert librdkafka_threads() > before
    await member.kafka.stop()
    assert librdkafka_threads() == before
    assert member.kafka.assignment() == set()
    await member.kafka.stop()  # twice: nothing more to do
