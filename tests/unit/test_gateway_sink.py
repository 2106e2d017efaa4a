"""The gateway's Kafka sink after shutdown: a request still in flight must not start a
producer nobody will stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.lineage import KafkaUnavailable, Sink


class PlainProducer:
    """A producer that starts on demand, as ours does, and counts it; without `enqueue`
    the sink sends one record at a time."""

    def __init__(self) -> None:
        self.starts = 0
        self.running = False
        self.sent: list[bytes] = []

    async def start(self) -> None:
        if not self.running:
            self.starts += 1
            self.running = True

    async def stop(self) -> None:
        self.running = False

    async def send(self, topic: str, key: str, value: bytes) -> None:
        await self.start()
        self.sent.append(value)


class CountingProducer(PlainProducer):
    """The same with `enqueue`: the sink appends records and awaits their acks."""

    async def enqueue(self, topic: str, key: str, value: bytes) -> asyncio.Future[Any]:
        await self.start()
        self.sent.append(value)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.parametrize("kind", [CountingProducer, PlainProducer])
def test_after_close_no_request_starts_the_producer_again(kind: type[PlainProducer]) -> None:
    async def scenario() -> PlainProducer:
        producer = kind()
        sink = Sink(producer, "openlineage-events", timeout_s=2.0, cooldown_s=1.0)
        assert sink._pipelined == (kind is CountingProducer)
        await sink.publish("run-1", b"first")
        assert producer.running and producer.starts == 1
        await sink.close()
        assert not producer.running
        with pytest.raises(KafkaUnavailable, match="shutting down"):
            await sink.publish("run-1", b"late")
        outcomes = await sink.publish_in_order("run-1", [b"a", b"b"])
        assert all(isinstance(o, KafkaUnavailable) for o in outcomes)
        return producer

    producer = asyncio.run(scenario())
    assert producer.starts == 1 and not producer.running
    assert producer.sent == [b"first"]
