"""Kafka helpers for the consumers' integration tests, the benchmark and smoke checks:
private topics, producing, waiting until a group has committed everything, reading a DLQ."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from consumers.kafka import stop_consumer
from lineagehub.topics import dlq


def unique(prefix: str) -> str:
    return f"{prefix}-t{uuid.uuid4().hex[:10]}"


async def create_topics(bootstrap: str, topics: Iterable[str], partitions: int = 3) -> None:
    """Create each topic and its `.dlq` (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted({n for t in topics for n in (t, dlq(t))})
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
            )
        for _ in range(100):
            described = await admin.describe_topics(names)
            if all(not d.get("error_code") and d.get("partitions") for d in described):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes | None]],
    max_request_size: int = 4 * 1024 * 1024,
    headers: Sequence[Sequence[tuple[str, bytes]] | None] | None = None,
) -> None:
    """Send (key, value) pairs in order and wait for every ack; `headers`: each
    message's record headers, by position."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=max_request_size,
        linger_ms=5,
    )
    await producer.start()
    try:
        each = headers or [None] * len(messages)
        futures = [
            await producer.send(topic, value=v, key=k, headers=list(h) if h else None)
            for (k, v), h in zip(messages, each, strict=True)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def partitions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    tps = await partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await stop_consumer(consumer)


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def describe_group(bootstrap: str, group: str) -> tuple[str, list[str]]:
    """`group`'s state and the client id of each of its members, as the broker says."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    found = described.groups[0]
    return str(found[2]), sorted(str(member[1]) for member in found[5])


async def wait_drained(bootstrap: str, group: str, topics: Sequence[str], within: float) -> None:
    """Wait until `group` has committed the end of every partition of `topics`."""
    ends = {tp: off for tp, off in (await end_offsets(bootstrap, topics)).items() if off > 0}
    deadline = time.monotonic() + within
    done: dict[TopicPartition, int] = {}
    while time.monotonic() < deadline:
        try:
            done = await committed(bootstrap, group)
        except KafkaError:  # the group coordinator may still be starting
            await asyncio.sleep(0.5)
            continue
        if all(done.get(tp, -1) >= off for tp, off in ends.items()):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"group {group} not drained: ends {ends}, committed {done}")


async def read_all(bootstrap: str, topic: str, expect: int, within: float) -> list[ConsumerRecord]:
    """Read a topic from the start until `expect` records arrived (or time runs out)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + within
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await stop_consumer(consumer)
    return out


async def read_from(
    bootstrap: str,
    start: dict[TopicPartition, int],
    match: Callable[[ConsumerRecord], bool],
    expect: int,
    within: float,
) -> list[ConsumerRecord]:
    """Records that `match`, from the `start` offsets on, until `expect` of them arrived
    (or time runs out)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + within
        while len(found) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            found.extend(r for records in batch.values() for r in records if match(r))
    finally:
        await stop_consumer(consumer)
    return found
