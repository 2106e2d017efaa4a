"""The runner's Kafka emitter against the stack's broker."""

from __future__ import annotations

import asyncio

import pytest

from consumers.testkit import create_topics, unique
from lineagehub.telemetry import publisher
from pipeline_runner.emit import KafkaEmitter

pytestmark = pytest.mark.dataplane


async def test_concurrent_first_sends_start_one_producer_which_close_stops(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[publisher.KafkaPublisher] = []
    stopped: list[publisher.KafkaPublisher] = []

    class Counted(publisher.KafkaPublisher):
        async def start(self) -> None:
            started.append(self)
            await super().start()

        async def stop(self) -> None:
            stopped.append(self)
            await super().stop()

    monkeypatch.setattr(publisher, "KafkaPublisher", Counted)
    topic = unique("runner-emit")
    await create_topics(env["KAFKA_BOOTSTRAP"], [topic])
    emitter = KafkaEmitter(env["KAFKA_BOOTSTRAP"])
    # A stage's START, spans and metrics can all be the emitter's first send.
    await asyncio.gather(*(emitter.send(topic, "k", b"record") for _ in range(3)))
    await emitter.close()
    assert len(set(map(id, started))) == 1
    assert stopped == started[:1]
