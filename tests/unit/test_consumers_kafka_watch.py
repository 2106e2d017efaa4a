"""`watch_cluster` and `update_lag` end when their task is cancelled, even when the
cancellation arrives while the broker's answer is being handed back.

Python 3.11's `asyncio.wait_for` runs the awaited call in a task of its own; a cancel
that reaches the caller once that task has finished, but before the caller resumed, is
dropped and the result returned instead (CPython gh-86296, fixed by 3.12's rewrite). A
watch cancelled that way went on asking the cluster every interval, for ever: an await
of it never ended (a test hung until pytest's timeout), and the consumer it watched,
stopped meanwhile, had its client connect again to answer it.

The consumer here is the few attributes the calls reach; it cancels the calling task
while it answers, as a shutdown's cancel landing then would: the interleaving above,
made on cue."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.health import Health
from consumers.kafka import ask_cluster, update_lag, watch_cluster
from consumers.stats import Stats

TP = TopicPartition("watched", 0)


class _Cluster:
    def brokers(self) -> list[Any]:
        return []  # unknown yet: ask_cluster asks the bootstrap connection


class _Caller:
    """The task that calls the consumer, cancelled by the consumer's first answer."""

    task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        assert self.task is not None, "the test names the calling task first"
        self.task.cancel()


class _AnsweringClient:
    """Answers every request at once; the first answer is made while the caller is
    cancelled. A second request means the cancel was dropped."""

    def __init__(self, caller: _Caller) -> None:
        self.caller = caller
        self.cluster = _Cluster()
        self.asked = 0
        self.asked_again = asyncio.Event()

    async def send(self, node: object, request: object) -> object:
        self.asked += 1
        if self.asked == 1:
            self.caller.cancel()
        else:
            self.asked_again.set()
            await asyncio.Event().wait()  # the watch stays here until cancelled again
        return object()


class _Consumer:
    def __init__(self, caller: _Caller) -> None:
        self.caller = caller
        self._client = _AnsweringClient(caller)

    def subscription(self) -> set[str]:
        return {TP.topic}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.caller.cancel()  # the shutdown's cancel, while the offsets are handed back
        return dict.fromkeys(tps, 10)


async def _cancelled_or_asked_again(task: asyncio.Task[None], client: _AnsweringClient) -> bool:
    """Whether `task` ended cancelled before asking the cluster a second time."""
    again = asyncio.create_task(client.asked_again.wait())
    await asyncio.wait([task, again], return_when=asyncio.FIRST_COMPLETED)
    again.cancel()
    if not task.done():  # the cancel was dropped: end the watch so the test can end
        task.cancel()
        await asyncio.wait([task])
        return False
    return task.cancelled()


async def test_a_watch_cancelled_as_the_broker_answers_ends() -> None:
    caller = _Caller()
    consumer = _Consumer(caller)
    health = Health()
    watch = asyncio.create_task(
        watch_cluster(
            partial(ask_cluster, cast(AIOKafkaConsumer, consumer)),
            health,
            "watched",
            interval=0.0,
        )
    )
    caller.task = watch
    assert await _cancelled_or_asked_again(watch, consumer._client), "the cancel was dropped"
    assert consumer._client.asked == 1
    assert not health.reasons  # the answer it had came back: nothing was degraded


async def test_update_lag_cancelled_as_the_offsets_come_back_ends_cancelled() -> None:
    caller = _Caller()
    consumer = cast(AIOKafkaConsumer, _Consumer(caller))
    stats = Stats("watched")
    lag = asyncio.create_task(update_lag(consumer, stats, committed=lambda tp: 4))
    caller.task = lag
    await asyncio.wait([lag])
    assert lag.cancelled(), "the cancel was dropped: update_lag returned"
