"""The gateway's producer (librdkafka) against the stack's Kafka: one key's records land
in the order they were appended, with the request span's trace context in their
headers, and `stop` delivers what was appended but not yet awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from consumers.testkit import create_topics, read_all, unique
from gateway.kafka_producer import GatewayProducer
from lineagehub.tracecontext import TRACEPARENT

pytestmark = pytest.mark.dataplane


async def test_one_keys_records_land_in_order_with_the_spans_context(stack: Any) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    topic = unique("gateway-producer-order")
    await create_topics(bootstrap, [topic])
    producer = GatewayProducer(bootstrap)
    await producer.start()
    values = [f"record-{i}".encode() for i in range(20)]
    try:
        with TracerProvider().get_tracer("test").start_as_current_span("request") as span:
            acks = [await producer.enqueue(topic, "run-1", value) for value in values]
        await asyncio.gather(*acks)
        untraced = await producer.enqueue(topic, "run-2", b"untraced")
        await untraced
    finally:
        await producer.stop()
    records = await read_all(bootstrap, topic, expect=21, within=30)
    traced = [r for r in records if r.key == b"run-1"]
    assert [r.value for r in traced] == values
    trace_id = f"{span.get_span_context().trace_id:032x}"
    for record in traced:
        headers = dict(record.headers)
        assert trace_id in headers[TRACEPARENT].decode(), headers
    (plain,) = [r for r in records if r.key == b"run-2"]
    assert not plain.headers  # no sampled span, no header bytes


async def test_stop_delivers_the_records_appended_before_it(stack: Any) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    topic = unique("gateway-producer-stop")
    await create_topics(bootstrap, [topic])
    producer = GatewayProducer(bootstrap, linger_ms=50)
    await producer.start()
    acks = [await producer.enqueue(topic, f"k{i}", f"v{i}".encode()) for i in range(200)]
    await producer.stop()  # nothing awaited yet: every record is still held or in flight
    assert all(ack.done() and ack.exception() is None for ack in acks)
    records = await read_all(bootstrap, topic, expect=200, within=30)
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(200))
