"""The gateway's librdkafka producer with no broker to reach (a closed loopback port, the
real client): starting fails with the broker's error as soon as the client knows, so a
request gets a 503 naming it rather than waiting out the sink's timeout."""

from __future__ import annotations

import pytest

from gateway.kafka_producer import GatewayProducer
from gateway.lineage import KafkaUnavailable, Sink
from lineagehub.librdkafka_producer import KafkaUnreachable
from tests.unit.test_runner_kafka_down import _closed_port


async def test_start_fails_with_the_brokers_error_and_keeps_no_producer() -> None:
    producer = GatewayProducer(_closed_port())
    with pytest.raises(KafkaUnreachable, match="_ALL_BROKERS_DOWN"):
        await producer.start()
    assert producer._producer is None  # the next start makes a fresh client
    await producer.stop()


async def test_a_publish_without_kafka_is_refused_with_the_reason_not_a_timeout() -> None:
    # The sink's wait (60 s) is far longer than the test's: a producer that waited for
    # the broker would end in "timed out waiting for the broker", not the broker's error.
    sink = Sink(GatewayProducer(_closed_port()), "t", timeout_s=60.0, cooldown_s=5.0)
    try:
        with pytest.raises(KafkaUnavailable, match="_ALL_BROKERS_DOWN") as refused:
            await sink.publish("k", b"record")
        assert refused.value.retry_after == 5.0
        # Within the cool-down the next request is refused without a new client.
        with pytest.raises(KafkaUnavailable, match="_ALL_BROKERS_DOWN"):
            await sink.publish("k", b"record")
    finally:
        await sink.close()
