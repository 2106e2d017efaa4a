"""The gateway producer's linger: 2 ms unless LINEAGEHUB_GATEWAY_KAFKA_LINGER_MS says
otherwise, and the served sink's producer is built with it (a one-event request waits
at least the linger for its acknowledgement: at 5 ms, 16 concurrent callers could not
pass ~2.7k events/s)."""

from __future__ import annotations

import pytest

from gateway.app import _default_sink
from gateway.config import from_env
from gateway.kafka_producer import GatewayProducer


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
