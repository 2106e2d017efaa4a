"""`stop_consumer` tells a cancellation of its own task from the stray `CancelledError`
aiokafka's consumer stop raises, in the two shapes of aiokafka 0.14's `Fetcher.close()`
(`consumers/kafka.py` says where): the real broker cases are in
`tests/integration/test_consumer_shutdown.py`; these are the interleavings a broker
cannot be made to hit on cue. The consumer here has aiokafka's `stop()` structure (the
routine cancelled and awaited inside `suppress(CancelledError)`, then each pending fetch
cancelled and awaited bare, then the client closed) and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer

from consumers.kafka import stop_consumer


class _Client:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _Fetcher:
    def __init__(self, routine: asyncio.Task[None], pending: set[asyncio.Task[bool]]) -> None:
        self._fetch_task = routine
        self._pending_tasks = pending


class _AiokafkaShapedConsumer:
    """`AIOKafkaConsumer.stop()` as 0.14 has it: `Fetcher.close()` then the client."""

    def __init__(self, routine_started: asyncio.Event, backing_off: bool) -> None:
        self.routine_started = routine_started
        self._client = _Client()
        routine = asyncio.ensure_future(self._routine())
        pending = {asyncio.ensure_future(self._fetch_in_back_off())} if backing_off else set()
        self._fetcher = _Fetcher(routine, pending)

    async def _routine(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.routine_started.set()  # the close is now awaiting this task
            await asyncio.Event().wait()  # a cancellation of the closer meets it here

    async def _fetch_in_back_off(self) -> bool:
        await asyncio.sleep(3600)  # a failed fetch's retry_backoff_ms, outside any except
        return False

    async def stop(self) -> None:
        self._fetcher._fetch_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._fetcher._fetch_task
        for task in self._fetcher._pending_tasks:
            task.cancel()
            await task
        await self._client.close()


def _consumer(started: asyncio.Event, *, backing_off: bool) -> _AiokafkaShapedConsumer:
    return _AiokafkaShapedConsumer(started, backing_off)


def _as_aiokafka(consumer: _AiokafkaShapedConsumer) -> AIOKafkaConsumer:
    return cast(AIOKafkaConsumer, cast(Any, consumer))


def test_a_cancellation_swallowed_inside_aiokafkas_stop_still_cancels_the_stopper() -> None:
    async def main() -> None:
        started = asyncio.Event()
        consumer = _consumer(started, backing_off=False)
        stopper = asyncio.create_task(stop_consumer(_as_aiokafka(consumer)))
        await started.wait()
        # The closer awaits its cancelled routine inside suppress(CancelledError): our
        # cancel is passed to the routine, which ends cancelled, and is swallowed there.
        stopper.cancel()
        consumer._fetcher._fetch_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopper
        assert stopper.cancelled()
        assert consumer._client.closed  # stop() itself went on to the end

    asyncio.run(main())


def test_a_stray_cancelled_error_is_absorbed_and_the_client_closed() -> None:
    async def main() -> None:
        started = asyncio.Event()
        consumer = _consumer(started, backing_off=True)

        async def stop() -> None:
            await stop_consumer(_as_aiokafka(consumer))

        stopper = asyncio.create_task(stop())
        await started.wait()
        consumer._fetcher._fetch_task.cancel()  # the routine ends; the fetch raises next
        await stopper  # no CancelledError: nobody cancelled the stopper
        assert consumer._client.closed
        assert all(t.done() for t in consumer._fetcher._pending_tasks)

    asyncio.run(main())


def test_a_task_cancelled_before_it_stops_still_closes_on_a_stray_cancelled_error() -> None:
    """A consumer task cancelled earlier stops in its `finally` with a cancel request
    still counted: the stray error is told from a new cancellation, not from none."""

    async def main() -> None:
        started = asyncio.Event()
        consumer = _consumer(started, backing_off=True)
        stopped = asyncio.Event()

        async def consumer_task() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await stop_consumer(_as_aiokafka(consumer))
                stopped.set()

        task = asyncio.create_task(consumer_task())
        await asyncio.sleep(0)
        task.cancel()
        await started.wait()
        consumer._fetcher._fetch_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # its own, first cancellation
        assert stopped.is_set()  # the stray error did not cut the finally short
        assert consumer._client.closed

    asyncio.run(main())
