"""The runner's Kafka emitter against the stack's broker: sends made at once (a stage's
COMPLETE, spans and metrics) are each acknowledged, and the records of one key keep the
order they were sent in (START before COMPLETE)."""

from __future__ import annotations

import asyncio

import pytest

from consumers.testkit import create_topics, read_all, unique
from pipeline_runner.emit import KafkaEmitter

pytestmark = pytest.mark.dataplane


async def test_concurrent_sends_are_acknowledged_and_keep_their_order_per_key(
    env: dict[str, str],
) -> None:
    topic = unique("runner-emit")
    await create_topics(env["KAFKA_BOOTSTRAP"], [topic])
    emitter = KafkaEmitter(env["KAFKA_BOOTSTRAP"])
    try:
        values = [f"record {i}".encode() for i in range(20)]
        await asyncio.gather(*(emitter.send(topic, "one-key", v) for v in values))
    finally:
        await emitter.close()
    records = await read_all(env["KAFKA_BOOTSTRAP"], topic, expect=len(values), within=60)
    assert [r.value for r in records] == values
    assert {r.key for r in records} == {b"one-key"}
