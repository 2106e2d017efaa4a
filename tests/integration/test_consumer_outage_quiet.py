"""With its broker away, a consumer retries at a measured pace: aiokafka's fetcher,
group coordinator and metadata task back off between tries instead of waking each other
ten times a second (thousands of error lines and several % of a core per idle outage).
The lineage consumer's group member is aiokafka's (the batch consumers' is librdkafka's,
whose own log is silenced and whose reconnects back off exponentially by default)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer

from consumers import kafka as kafka_helpers
from consumers.lineage import consumer as lineage_module
from consumers.testkit import create_topics, unique
from tests.conftest import StackHandle
from tests.consumer_faults import finish, lineage_consumer, start, wait_for
from tests.marquez_standin import MarquezStandin

pytestmark = pytest.mark.dataplane

# The consumer asks the cluster whether it is there every half second (a refused
# connection fails at once): the outage is watched for this many of its probes.
PROBES = 10
# aiokafka error lines allowed per probe while the broker is away: a second between
# retries gives about five, retrying every 100 ms gave about fifty.
LINES_PER_PROBE = 15


class Count(logging.Handler):
    """Counts the records of warning level and above that reach it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture
def aiokafka_errors() -> Iterator[Count]:
    counter = Count()
    logger = logging.getLogger("aiokafka")
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)


def count_probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list counting the consumers' (real) probes of the cluster that ended."""
    probes = [0]
    real = kafka_helpers.ask_cluster

    async def ask_cluster(consumer: AIOKafkaConsumer) -> None:
        try:
            await real(consumer)
        finally:
            probes[0] += 1

    # Where the lineage consumer looks it up (it imported the name).
    monkeypatch.setattr(lineage_module, "ask_cluster", ask_cluster)
    return probes


async def test_a_consumer_retries_a_stopped_broker_at_a_measured_pace(
    kafka: StackHandle,
    standin: MarquezStandin,
    aiokafka_errors: Count,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = unique("quiet-outage")
    await create_topics(kafka.env["KAFKA_BOOTSTRAP"], [topic], partitions=1)
    probes = count_probes(monkeypatch)
    consumer = lineage_consumer(
        kafka.env, standin, topic, unique("quiet-group"), kafka_check_interval=0.5
    )
    stop, task = start(consumer)
    try:
        await wait_for(lambda: consumer.health.body()[1]["status"] == "ok", "never healthy")
        kafka_client = consumer._consumer
        assert kafka_client is not None
        await wait_for(lambda: bool(kafka_client.assignment()), "never assigned")
        await asyncio.to_thread(kafka.stop, "kafka")
        await wait_for(
            lambda: consumer.health.body()[1]["status"] == "degraded", "never saw Kafka go"
        )
        lines, first = aiokafka_errors.count, probes[0]
        await wait_for(lambda: probes[0] >= first + PROBES, "the probes stopped", 60)
        lines = aiokafka_errors.count - lines
        print(f"[quiet outage] {lines} aiokafka error lines over {PROBES} probes")
        assert lines <= LINES_PER_PROBE * PROBES, (
            f"{lines} aiokafka error lines over {PROBES} probes of a stopped broker: "
            "its clients retry without backing off"
        )
        await asyncio.to_thread(kafka.start, "kafka")
        await wait_for(lambda: consumer.health.body()[1]["status"] == "ok", "never recovered")
    finally:
        await finish(stop, task)
