"""The stack's Kafka: every topic takes and gives back messages; data survives a restart."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from lineagehub.topics import ALL_TOPICS, LINEAGE_TOPIC, MAIN_TOPICS, PARTITIONS, dlq

if TYPE_CHECKING:
    from tests.conftest import StackHandle

pytestmark = pytest.mark.dataplane


async def _read_back(
    bootstrap: str, tp: TopicPartition, offset: int, wait_s: float = 20.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Everything in one partition from `offset` to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, offset)
        got: list[tuple[bytes | None, bytes | None]] = []
        async with asyncio.timeout(wait_s):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                got += [(m.key, m.value) for m in batch.get(tp, [])]
        return got
    finally:
        await consumer.stop()


async def test_topics_exist_with_partitions_and_dlqs(stack: StackHandle) -> None:
    assert set(ALL_TOPICS) == {*MAIN_TOPICS, *(dlq(t) for t in MAIN_TOPICS)}
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.env["KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        described = await admin.describe_topics(list(ALL_TOPICS))
    finally:
        await admin.close()
    partitions = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
    assert partitions == dict.fromkeys(ALL_TOPICS, PARTITIONS)


async def test_produce_and_consume_on_every_topic(stack: StackHandle) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    marker = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = {
            topic: await producer.send_and_wait(topic, b"payload-" + marker, key=marker)
            for topic in ALL_TOPICS
        }
    finally:
        await producer.stop()
    for topic, meta in sent.items():
        tp = TopicPartition(topic, meta.partition)
        assert (marker, b"payload-" + marker) in await _read_back(bootstrap, tp, meta.offset)


async def test_message_survives_broker_restart(stack: StackHandle) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    marker = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(LINEAGE_TOPIC, b"durable-" + marker, key=marker)
    finally:
        await producer.stop()

    await asyncio.to_thread(stack.restart, "kafka")

    tp = TopicPartition(LINEAGE_TOPIC, meta.partition)
    got = await _read_back(bootstrap, tp, meta.offset, wait_s=60.0)
    assert got[0] == (marker, b"durable-" + marker)
