"""The gateway producer's linger: 2 ms unless LINEAGEHUB_GATEWAY_KAFKA_LINGER_MS says
otherwise, and the served sink's producer is built with it (a one-event request waits
at least the linger for its acknowledgement: at 5 ms, 16 concurrent callers could not
pass ~2.7k events/s)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import kafka_producer
from gateway.app import _default_sink
from gateway.config import from_env
from gateway.kafka_producer import GatewayProducer
from lineagehub.librdkafka_producer import KafkaUnreachable, LibrdkafkaProducer
from lineagehub.topics import LINEAGE_TOPIC
from tests.unit.test_runner_kafka_down import _closed_port


@pytest.mark.parametrize(("setting", "expected"), [(None, 2), ("0", 0), ("7", 7)])
def test_the_sink_producer_lingers_as_configured(setting: str | None, expected: int) -> None:
    env = {"KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    if setting is not None:
        env["LINEAGEHUB_GATEWAY_KAFKA_LINGER_MS"] = setting
    sink = _default_sink(from_env(env))
    assert sink is not None
    assert isinstance(sink.publisher, GatewayProducer)
    assert sink.publisher.linger_ms == expected
    assert GatewayProducer("127.0.0.1:1").linger_ms == 2


@pytest.mark.parametrize("topic", [None, "lineage-custom"])
async def test_the_sink_producer_probes_the_topic_it_publishes_to(
    topic: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its connect and outage probe name one topic: the one LINEAGEHUB_GATEWAY_TOPIC sets.
    made: list[LibrdkafkaProducer] = []

    class Noted(LibrdkafkaProducer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(kafka_producer, "LibrdkafkaProducer", Noted)
    env = {"KAFKA_BOOTSTRAP": _closed_port()}
    if topic is not None:
        env["LINEAGEHUB_GATEWAY_TOPIC"] = topic
    sink = _default_sink(from_env(env))
    assert sink is not None and isinstance(sink.publisher, GatewayProducer)
    with pytest.raises(KafkaUnreachable):
        await sink.publisher.start()
    assert [p.probe_topic for p in made] == [topic or LINEAGE_TOPIC]
