"""The consumers' Kafka health check on the real broker asks about the consumer's own
topics only: asking for the whole cluster's metadata every 2 s cost tens of milliseconds
of CPU a call once the broker held thousands of topics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import AIOKafkaConnection

from consumers.health import Health
from consumers.kafka import make_consumer, watch_cluster
from consumers.testkit import create_topics, unique
from tests.consumer_faults import wait_for

pytestmark = pytest.mark.dataplane


@pytest.fixture
async def subscribed(env: dict[str, str]) -> AsyncIterator[tuple[AIOKafkaConsumer, str]]:
    """A started consumer subscribed to a private topic (its `.dlq` exists beside it)."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("watch")
    await create_topics(bootstrap, [topic], partitions=1)
    consumer = make_consumer(bootstrap, unique("watch-group"), [], "watch-test")
    await consumer.start()
    consumer.subscribe([topic])
    try:
        yield consumer, topic
    finally:
        await consumer.stop()


def metadata_topics(response: Any) -> set[str] | None:
    """The topic names in a metadata response, None for any other response."""
    if not type(response).__name__.startswith("MetadataResponse"):
        return None
    return {str(entry[1]) for entry in response.topics}


async def test_the_watch_asks_only_for_the_consumers_topics(
    subscribed: tuple[AIOKafkaConsumer, str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, topic = subscribed
    admin = AIOKafkaAdminClient(bootstrap_servers=env["KAFKA_BOOTSTRAP"])
    await admin.start()
    try:
        # The broker holds more than ours (at least our topic's dead-letter topic), so a
        # request for the whole cluster would show in the answers.
        assert len(set(await admin.list_topics()) - {topic}) >= 1
    finally:
        await admin.close()
    answered: list[set[str]] = []
    send = AIOKafkaConnection.send

    def recording_send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        sent = send(self, request, expect_response=expect_response)
        if not expect_response:
            return sent

        async def answer() -> Any:
            response = await sent
            if (topics := metadata_topics(response)) is not None:
                answered.append(topics)
            return response

        return asyncio.ensure_future(answer())

    monkeypatch.setattr(AIOKafkaConnection, "send", recording_send)
    health = Health()
    watch = asyncio.create_task(watch_cluster(consumer, health, "watch", interval=0.05))
    try:
        await wait_for(lambda: len(answered) >= 3, "the watch asked the broker nothing")
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    assert not health.reasons, health.reasons
    assert all(topics == {topic} for topics in answered), answered
