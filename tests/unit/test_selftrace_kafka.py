"""The self-trace Kafka exporter (librdkafka): a batch it cannot take is said in the log
and reported as not exported, never raised into the service; closed, it takes none."""

from __future__ import annotations

import logging

import pytest

from lineagehub.librdkafka_producer import MAX_RECORD_BYTES, producer_config
from lineagehub.selftrace import EXPORT_TIMEOUT_S, QUEUED_KBYTES, KafkaSpanExporter
from tests.helpers import librdkafka_threads


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


def test_shutdown_closes_the_client_and_ends_its_threads() -> None:
    """The exporter's librdkafka client is closed at shutdown, not left to the garbage
    collector: its threads (and connections) end while the exporter is still held."""
    before = librdkafka_threads()
    exporter = KafkaSpanExporter("127.0.0.1:1", topic="spans")
    assert librdkafka_threads() > before
    exporter.shutdown()
    assert librdkafka_threads() <= before
    assert exporter.force_flush() is True  # nothing queued, and no call on the closed client


def test_the_exporter_takes_the_producers_settings_with_its_own_bounds() -> None:
    """The span exporter's producer is configured as the gateway's and the stages' are
    (acks=all, idempotent, the record bound, librdkafka's log silenced), only its
    delivery timeout and its queue bound its own."""
    exporter = KafkaSpanExporter("127.0.0.1:1", topic="spans", client_id="spans-test")
    try:
        shared = producer_config("127.0.0.1:1", "spans-test")
        own = {k: v for k, v in exporter.config.items() if shared.get(k) != v}
        assert own == {
            "delivery.timeout.ms": int(EXPORT_TIMEOUT_S * 1000),
            "queue.buffering.max.kbytes": QUEUED_KBYTES,
        }
        assert shared["acks"] == "all" and shared["enable.idempotence"] is True
        assert shared["message.max.bytes"] == MAX_RECORD_BYTES
    finally:
        exporter.shutdown()
