"""The self-trace Kafka exporter (librdkafka): a batch it cannot take is said in the log
and reported as not exported, never raised into the service; closed, it takes none."""

from __future__ import annotations

import logging

import pytest

from lineagehub.librdkafka_producer import MAX_RECORD_BYTES
from lineagehub.selftrace import KafkaSpanExporter


def test_a_batch_kafka_cannot_take_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    exporter = KafkaSpanExporter("127.0.0.1:1", topic="spans")  # no broker: nothing is sent
    try:
        with caplog.at_level(logging.WARNING, logger="lineagehub.selftrace"):
            assert exporter.send("k", b"x" * (MAX_RECORD_BYTES + 1)) is False
        (line,) = [r.getMessage() for r in caplog.records]
        assert line.startswith("self-trace spans not exported to Kafka:")
        assert "too large" in line.lower()
    finally:
        exporter.shutdown()  # nothing queued: returns at once


def test_a_shut_down_exporter_refuses_batches() -> None:
    exporter = KafkaSpanExporter("127.0.0.1:1", topic="spans")
    exporter.shutdown()
    assert exporter.send("k", b"payload") is False
    exporter.shutdown()  # twice: nothing more to do
