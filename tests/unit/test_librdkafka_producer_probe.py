"""The producer's metadata requests (at `connect` and every poll of an outage) each name
one topic: a request without one makes the broker describe all of its topics. The real
client against a closed loopback port; its `list_topics` is watched through a wrapper."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lineagehub.librdkafka_producer import KafkaUnreachable, LibrdkafkaProducer
from lineagehub.topics import LINEAGE_TOPIC
from tests.helpers import wait_until
from tests.unit.test_runner_kafka_down import _closed_port


class MetadataRequests:
    """Stands between the producer and its librdkafka client, noting the topic of each
    `list_topics` call (None: all topics) and how many got an answer, passing every
    call on."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.topics: list[str | None] = []
        self.answered = 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        with self._lock:
            self.topics.append(topic)
        metadata = self._client.list_topics(topic, timeout=timeout)
        with self._lock:
            self.answered += 1
        return metadata

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def watched(producer: LibrdkafkaProducer) -> MetadataRequests:
    requests = MetadataRequests(producer._producer)
    producer._producer = requests  # type: ignore[assignment]
    return requests


@pytest.mark.parametrize("probe_topic", [LINEAGE_TOPIC, "custom-topic"])
async def test_connect_and_the_outage_probe_ask_for_one_topic(probe_topic: str) -> None:
    if probe_topic == LINEAGE_TOPIC:  # the default
        producer = LibrdkafkaProducer(_closed_port(), "probe-test")
    else:
        producer = LibrdkafkaProducer(_closed_port(), "probe-test", probe_topic=probe_topic)
    requests = watched(producer)
    try:
        with pytest.raises(KafkaUnreachable, match="_ALL_BROKERS_DOWN"):
            await producer.connect(30.0)
        # The poller keeps asking while no broker answers: several probes seen.
        wait_until(lambda: len(requests.topics) >= 4, timeout=30, every=0.05)
    finally:
        producer.close()
    assert set(requests.topics) == {probe_topic}, requests.topics
    assert requests.answered == 0
