"""The lineage consumer's loop on real Kafka: behaviours the mutation run (`make mutation`
with MUTATION_INTEGRATION=1) found unchecked."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from aiokafka import TopicPartition

from consumers.testkit import create_topics, produce, unique, wait_drained
from tests.consumer_faults import finish, lineage_consumer, lineage_events, start, wait_for
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane


async def test_a_partition_pauses_when_its_in_flight_events_reach_the_limit(
    env: dict[str, str], standin: MarquezStandin
) -> None:
    """`max_in_flight` is the number of events a partition holds when it pauses. The
    limit is checked after each fetch, so a fetch may overshoot it; with one record per
    fetch, the partition holds exactly the limit (not one more) while Marquez is slow."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic, group = unique("lineage-limit"), unique("lineage-limit-group")
    await create_topics(bootstrap, [topic], partitions=1)
    tp = TopicPartition(topic, 0)
    runs = [str(uuid.uuid4()) for _ in range(8)]
    standin.hold_all()  # received, never answered until released
    consumer = lineage_consumer(env, standin, topic, group, max_in_flight=3, fetch_max_records=1)
    stop, task = start(consumer)
    try:
        await wait_for(lambda: consumer._consumer is not None, "the consumer never started")
        kafka = consumer._consumer
        assert kafka is not None
        await produce(bootstrap, topic, lineage_events(runs))
        await wait_for(lambda: kafka.paused() == {tp}, "the partition never paused")
        assert consumer.tracker.in_flight(tp) == 3
        standin.release_all()
        await wait_drained(bootstrap, group, [topic], within=60)
        assert not kafka.paused()
    finally:
        standin.release_all()
        await finish(stop, task)
    assert standin.stored_count() == Counter({(r, "START"): 1 for r in runs})
