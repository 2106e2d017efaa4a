"""The consumers' Kafka health check on the real broker asks about the consumer's own
topics only: asking for the whole cluster's metadata every 2 s cost tens of milliseconds
of CPU a call once the broker held thousands of topics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import AIOKafkaConnection

from consumers.health import Health
from consumers.kafka import ask_cluster, make_consumer, stop_consumer, watch_cluster
from consumers.testkit import create_topics, unique
from tests.consumer_faults import wait_for

pytestmark = pytest.mark.dataplane

# Each Kafka step here (topics made, a client started or stopped, a cancelled watch
# ended) is one or a few requests, each bounded by aiokafka's request timeout (40 s):
# past this the broker or the client is stuck, and the test says where instead of
# hanging the session until pytest's timeout.
WITHIN = 60.0


@pytest.fixture
async def subscribed(env: dict[str, str]) -> AsyncIterator[tuple[AIOKafkaConsumer, str]]:
    """A started consumer subscribed to a private topic (its `.dlq` exists beside it)."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("watch")
    consumer = make_consumer(bootstrap, unique("watch-group"), [], "watch-test")
    try:
        async with asyncio.timeout(WITHIN):
            await create_topics(bootstrap, [topic], partitions=1)
            await consumer.start()
        consumer.subscribe([topic])
        yield consumer, topic
    finally:
        # stop_consumer, not consumer.stop(): aiokafka's can raise CancelledError and
        # leave the connections open (see stop_consumer).
        async with asyncio.timeout(WITHIN):
            await stop_consumer(consumer)


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
    try:
        async with asyncio.timeout(WITHIN):
            await admin.start()
            # The broker holds more than ours (at least our topic's dead-letter topic), so
            # a request for the whole cluster would show in the answers.
            assert len(set(await admin.list_topics()) - {topic}) >= 1
    finally:
        await admin.close()
    answered: list[set[str]] = []
    own = consumer._client  # the consumer's connections only: not another client's
    send = AIOKafkaConnection.send

    def recording_send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        sent = send(self, request, expect_response=expect_response)
        if not expect_response or all(conn is not self for conn in own._conns.values()):
            return sent

        async def answer() -> Any:
            response = await sent
            if (topics := metadata_topics(response)) is not None:
                answered.append(topics)
            return response

        return answer()  # a coroutine, as aiokafka's own send returns

    monkeypatch.setattr(AIOKafkaConnection, "send", recording_send)
    health = Health()
    watch = asyncio.create_task(
        watch_cluster(partial(ask_cluster, consumer), health, "watch", interval=0.05)
    )
    try:
        await wait_for(lambda: len(answered) >= 3, "the watch asked the broker nothing")
    finally:
        watch.cancel()
        # Bounded: a cancel the watch dropped (Python 3.11's wait_for did, and the
        # watch asked on for ever) fails here, saying so.
        await asyncio.wait([watch], timeout=WITHIN)
    assert watch.cancelled(), "the watch did not end when cancelled"
    assert not health.reasons, health.reasons
    assert all(topics == {topic} for topics in answered), answered
