"""`Sink.publish` (one record, the ingest route's usual request) takes a shorter path
than `publish_in_order` on a pipelined producer; every outcome must be the same: the
acknowledged record, a failed acknowledgement, a refused append, a wait that times out
(the acknowledgement given up), and a sink already closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gateway.lineage import KafkaUnavailable, Sink
from tests.pipelined_producer import PipelinedStandIn


class ScriptedProducer(PipelinedStandIn):
    """A pipelined producer whose acknowledgement `outcome` decides: None acked at once,
    an exception failed, "never" left pending; `refuse` makes the append itself raise."""

    def __init__(self, outcome: BaseException | str | None, refuse: bool = False) -> None:
        self.outcome = outcome
        self.refuse = refuse
        self.appended: list[tuple[str, str, bytes]] = []
        self.acks: list[asyncio.Future[Any]] = []

    async def enqueue(self, topic: str, key: str, value: bytes) -> asyncio.Future[Any]:
        if self.refuse:
            raise BufferError("Local: Queue full")
        self.appended.append((topic, key, value))
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.outcome is None:
            ack.set_result(None)
        elif isinstance(self.outcome, BaseException):
            ack.set_exception(self.outcome)
        self.acks.append(ack)
        return ack


Seen = tuple[str | None, float | None, str, list[tuple[str, str, bytes]], list[bool]]


async def _single(make: Callable[[], ScriptedProducer], close: bool) -> Seen:
    producer = make()
    sink = Sink(producer, "topic-x", timeout_s=0.05, cooldown_s=7.0)
    if close:
        await sink.close()
    try:
        await sink.publish("run-1", b"v")
    except KafkaUnavailable as exc:
        found: tuple[str | None, float | None] = (exc.reason, exc.retry_after)
    else:
        found = (None, None)
    return (*found, sink.last_error, producer.appended, [a.cancelled() for a in producer.acks])


async def _in_order(make: Callable[[], ScriptedProducer], close: bool) -> Seen:
    producer = make()
    sink = Sink(producer, "topic-x", timeout_s=0.05, cooldown_s=7.0)
    if close:
        await sink.close()
    (failure,) = await sink.publish_in_order("run-1", [b"v"])
    found = (None, None) if failure is None else (failure.reason, failure.retry_after)
    return (*found, sink.last_error, producer.appended, [a.cancelled() for a in producer.acks])


CASES: dict[str, tuple[Callable[[], ScriptedProducer], bool]] = {
    "acknowledged": (lambda: ScriptedProducer(None), False),
    "ack failed": (lambda: ScriptedProducer(ConnectionError("NOT_ENOUGH_REPLICAS: x")), False),
    "append refused": (lambda: ScriptedProducer(None, refuse=True), False),
    "no ack in time": (lambda: ScriptedProducer("never"), False),
    "sink closed": (lambda: ScriptedProducer(None), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_record_has_the_outcome_publish_in_order_gives(case: str) -> None:
    make, close = CASES[case]
    single = asyncio.run(_single(make, close))
    in_order = asyncio.run(_in_order(make, close))
    assert single == in_order
    reason = single[0]
    if case == "acknowledged":
        assert reason is None and single[3] == [("topic-x", "run-1", b"v")]
    else:
        assert reason is not None and single[1] == 7.0
    if case == "no ack in time":
        assert reason == "Kafka did not acknowledge the event: timed out waiting for the broker"
        assert single[4] == [True]  # the pending acknowledgement was given up
    if case == "sink closed":
        assert "shutting down" in reason_of(single) and single[3] == []


def reason_of(seen: Seen) -> str:
    assert seen[0] is not None
    return seen[0]
