"""`Sink.publish_groups`: a batch's keys appended in order and acknowledged in one wait,
each key's outcome its own. The producer here hands out acknowledgements the test
settles by hand (the real producer is exercised against Kafka in the integration
tests); what is checked is the sink's bookkeeping around them."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from gateway.lineage import Sink
from tests.pipelined_producer import PipelinedStandIn


class HandAckedProducer(PipelinedStandIn):
    """Appends in order; each record's acknowledgement is settled by `settle`, or by
    `acks` given up front (value -> None for acked, an exception for failed)."""

    def __init__(self, expect: int, refuse: bytes = b"") -> None:
        self.appended: list[tuple[str, bytes]] = []
        self.futures: dict[bytes, asyncio.Future[Any]] = {}
        self.refuse = refuse
        self.expect = expect
        self.all_in = asyncio.Event()  # `expect` records appended

    async def enqueue(self, topic: str, key: str, value: bytes) -> asyncio.Future[Any]:
        if value == self.refuse:
            raise KafkaTimeoutError("the producer's buffer stayed full")
        self.appended.append((key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures[value] = future
        if len(self.futures) == self.expect:
            self.all_in.set()
        return future

    def settle(self, outcomes: dict[bytes, BaseException | None]) -> None:
        for value, outcome in outcomes.items():
            if outcome is None:
                self.futures[value].set_result(None)
            else:
                self.futures[value].set_exception(outcome)


GROUPS = [("a", [b"a1", b"a2"]), ("b", [b"b1", b"b2", b"b3"]), ("c", [b"c1"])]


def _verdicts(outcomes: list[list[Any]]) -> list[list[str]]:
    return [["ok" if o is None else o.reason for o in group] for group in outcomes]


def test_each_key_succeeds_or_fails_on_its_own_acks_and_appends_keep_order() -> None:
    async def scenario() -> tuple[HandAckedProducer, list[list[Any]]]:
        producer = HandAckedProducer(6)
        sink = Sink(producer, "t", timeout_s=30.0, cooldown_s=1.0)
        publishing = asyncio.create_task(sink.publish_groups(GROUPS))
        await producer.all_in.wait()
        # b's second record fails: b2 and b3 are failures, b1 landed.
        producer.settle(
            {b"a1": None, b"a2": None, b"b1": None, b"b3": None, b"c1": None}
            | {b"b2": ConnectionError("broker gone")}
        )
        return producer, await publishing

    producer, outcomes = asyncio.run(scenario())
    assert producer.appended == [(k, v) for k, values in GROUPS for v in values]
    failed = "Kafka did not acknowledge the event: ConnectionError: broker gone"
    assert _verdicts(outcomes) == [["ok", "ok"], ["ok", failed, failed], ["ok"]]


def test_a_key_acked_in_time_succeeds_when_another_times_out() -> None:
    async def scenario() -> tuple[HandAckedProducer, list[list[Any]]]:
        producer = HandAckedProducer(6)
        sink = Sink(producer, "t", timeout_s=0.5, cooldown_s=1.0)
        publishing = asyncio.create_task(sink.publish_groups(GROUPS))
        await producer.all_in.wait()
        producer.settle({b"a1": None, b"a2": None, b"c1": None, b"b1": None})
        return producer, await publishing  # b2 and b3 never acknowledged

    producer, outcomes = asyncio.run(scenario())
    late = "Kafka did not acknowledge the event: timed out waiting for the broker"
    assert _verdicts(outcomes) == [["ok", "ok"], ["ok", late, late], ["ok"]]
    assert producer.futures[b"b2"].cancelled() and producer.futures[b"b3"].cancelled()


def test_a_key_that_cannot_be_appended_fails_whole_and_the_others_go_on() -> None:
    async def scenario() -> tuple[HandAckedProducer, list[list[Any]]]:
        producer = HandAckedProducer(4, refuse=b"b2")  # a1, a2, b1, c1
        sink = Sink(producer, "t", timeout_s=30.0, cooldown_s=1.0)
        publishing = asyncio.create_task(sink.publish_groups(GROUPS))
        await producer.all_in.wait()
        producer.settle({b"a1": None, b"a2": None, b"b1": None, b"c1": None})
        return producer, await publishing

    producer, outcomes = asyncio.run(scenario())
    assert [v for _, v in producer.appended] == [b"a1", b"a2", b"b1", b"c1"]
    verdicts = _verdicts(outcomes)
    assert verdicts[0] == ["ok", "ok"] and verdicts[2] == ["ok"]
    assert len(set(verdicts[1])) == 1 and "buffer stayed full" in verdicts[1][0]
