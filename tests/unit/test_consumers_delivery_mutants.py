"""Delivery details `make mutation` found unchecked: the DLQ record's key and headers, the
DLQ publish retry, the gate's test POSTs, and the offset tracker on unknown partitions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiokafka.errors import KafkaConnectionError

from consumers.dlq import DeadLetterQueue, Headers, Rejection, dlq_headers, header
from consumers.lineage.consumer import Gate
from consumers.offsets import OffsetTracker
from consumers.retry import Backoff
from tests.http_answers import Answering
from tests.unit.test_consumers_lineage_unit import FakeProducer, Rec, consumer_with


async def yield_to_waiters() -> None:
    """Let every ready task run up to its next await: a scheduling step, no time passes."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_an_error_text_that_is_not_valid_unicode_still_makes_a_header() -> None:
    # A lone surrogate (e.g. from a mis-decoded payload quoted in the error) is replaced.
    headers = dict(dlq_headers(Rec(value=b"{"), Rejection("schema", "bad \ud800 x"), "c", 1))
    assert headers["dlq.error"] == b"bad ? x"


def test_the_dlq_timestamp_is_now_in_milliseconds() -> None:
    before = int(time.time() * 1000)
    stamp = header(dlq_headers(Rec(value=b"{"), Rejection("schema", "y"), "c"), "dlq.timestamp")
    after = int(time.time() * 1000)
    assert stamp is not None and before <= int(stamp) <= after


async def test_a_dead_letter_keeps_its_key_and_a_truncated_one_keeps_a_missing_key_missing() -> (
    None
):
    producer = FakeProducer()
    await DeadLetterQueue(producer, "lineage").send(Rec(value=b"{"), Rejection("schema", "x"))
    assert [key for _, _, key, _ in producer.sent] == [b"run-key"]
    producer = FakeProducer(too_large_once=True)
    await DeadLetterQueue(producer, "lineage").send(
        Rec(value=b"a" * 100_000, key=None), Rejection("schema", "x")
    )
    assert [key for _, _, key, _ in producer.sent] == [None]
    producer = FakeProducer(too_large_once=True)
    await DeadLetterQueue(producer, "lineage").send(
        Rec(value=b"a" * 100_000, key=b"k" * 5000), Rejection("schema", "x")
    )
    assert [key for _, _, key, _ in producer.sent] == [b"k" * 1024]


@dataclass
class FlakyProducer(FakeProducer):
    """The DLQ topic's broker is unreachable for the first `failures` publishes."""

    failures: int = 0

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError()
        await super().send_and_wait(topic, value, key, headers=headers)


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    """A Backoff that notes which retry each delay was for, and does not wait."""

    asked: list[int] = field(default_factory=list)

    def delay(self, attempt: int, rand: object = None) -> float:
        self.asked.append(attempt)
        return 0.0


async def test_a_dead_letter_is_retried_with_growing_backoff_until_kafka_takes_it() -> None:
    async with Answering(lambda method, body: (201, "{}")) as marquez:
        c, _ = consumer_with(marquez)
        backoff = RecordingBackoff(base=0.001, cap=0.01)
        c.s.backoff = backoff
        producer = FlakyProducer(failures=3)
        c._dlq = DeadLetterQueue(producer, "lineage")
        await c._dead_letter(Rec(value=b"{"), Rejection("invalid_json", "x"))
    assert len(producer.sent) == 1
    assert backoff.asked == [1, 2, 3]
    assert c.stats.get("dead_lettered", topic="openlineage-events", reason="invalid_json") == 1


def test_the_offset_tracker_answers_for_partitions_it_never_saw() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    assert tracker.in_flight("p") == 0
    assert tracker.last_committed("p") is None
    tracker.forget("p")  # a partition revoked before any of its records arrived
    assert tracker.partitions() == []


async def test_the_gate_answers_a_probe_at_once_when_up_or_when_nobody_waits() -> None:
    gate = Gate(threshold=1)
    assert await gate.test() is True
    assert gate.failure() is True and not gate.is_up
    assert await gate.test() is True, "no event waits to test it: the probe's answer decides"
    assert gate.is_up


async def test_one_test_post_at_a_time_and_the_next_waiter_tests_after_a_4xx() -> None:
    gate = Gate(threshold=1)
    gate.failure()
    waiters = [asyncio.create_task(gate.wait_up()) for _ in range(3)]
    await yield_to_waiters()
    probe = asyncio.create_task(gate.test())
    await yield_to_waiters()
    assert [w.done() for w in waiters] == [True, False, False], "exactly one waiter tests"
    assert waiters[0].result() is True
    gate.tested(None)  # its POST was a 4xx: it proves nothing, the next waiter tests
    await yield_to_waiters()
    assert [w.done() for w in waiters] == [True, True, False]
    assert waiters[1].result() is True
    assert not probe.done()
    gate.tested(False)  # Marquez failed the test: the gate stays down
    assert await probe is False
    assert not gate.is_up
    # The failed test left no pass behind: a new waiter waits for the next probe.
    late = asyncio.create_task(gate.wait_up())
    await yield_to_waiters()
    assert not late.done() and not waiters[2].done()
    gate.open()
    assert await late is False and await waiters[2] is False
