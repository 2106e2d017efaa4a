"""The sink's bounded waits for acknowledgements (`gateway.lineage._acknowledged_by` for
one record, `_settled` for a batch): an acknowledgement's own outcome inside the bound,
a TimeoutError with the unsettled ones cancelled at the deadline, and the request's own
cancellation passed on as a cancellation, never as a timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.lineage import _acknowledged_by, _settled


async def _wait_one(settle: str, after: float, bound: float) -> tuple[str, bool]:
    """What `_acknowledged_by` does with an ack settled `after` s in, bounded at `bound`."""
    loop = asyncio.get_running_loop()
    ack: asyncio.Future[Any] = loop.create_future()
    if settle == "ok":
        loop.call_later(after, ack.set_result, None)
    elif settle == "error":
        loop.call_later(after, ack.set_exception, ConnectionError("NOT_ENOUGH_REPLICAS"))
    try:
        await _acknowledged_by(ack, loop, loop.time() + bound)
    except Exception as exc:
        return type(exc).__name__, ack.cancelled()
    return "acknowledged", ack.cancelled()


@pytest.mark.parametrize(
    ("settle", "after", "expected"),
    [
        ("ok", 0.0, ("acknowledged", False)),
        ("error", 0.0, ("ConnectionError", False)),
        ("never", 0.0, ("TimeoutError", True)),
    ],
)
def test_one_ack_has_its_outcome_or_times_out_cancelled(
    settle: str, after: float, expected: tuple[str, bool]
) -> None:
    assert asyncio.run(_wait_one(settle, after, 0.05)) == expected


def test_an_ack_already_settled_is_read_without_waiting() -> None:
    async def run() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        done.set_result(None)
        await _acknowledged_by(done, loop, loop.time() - 1)  # past deadline: no timeout
        failed: asyncio.Future[Any] = loop.create_future()
        failed.set_exception(ConnectionError("x"))
        try:
            await _acknowledged_by(failed, loop, loop.time() + 5)
        except ConnectionError as exc:
            return "ok", str(exc)
        return "ok", "not raised"

    assert asyncio.run(run()) == ("ok", "x")


async def _cancelled_by_the_caller(wait: str) -> tuple[str, list[bool]]:
    loop = asyncio.get_running_loop()
    acks: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    acks[0].set_result(None)
    deadline = loop.time() + 30
    waiter = (
        _acknowledged_by(acks[1], loop, deadline) if wait == "one" else _settled(acks, deadline)
    )
    task = asyncio.ensure_future(waiter)
    await asyncio.sleep(0)  # the task is now waiting on an ack
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        outcome = "cancelled"
    except TimeoutError:
        outcome = "timed out"
    else:
        outcome = "returned"
    return outcome, [a.cancelled() for a in acks]


@pytest.mark.parametrize("wait", ["one", "batch"])
def test_the_callers_cancellation_is_a_cancellation_not_a_timeout(wait: str) -> None:
    outcome, cancelled = asyncio.run(_cancelled_by_the_caller(wait))
    assert outcome == "cancelled"
    assert cancelled[0] is False  # a settled ack is left as it is


def test_a_batch_settles_what_came_in_time_and_cancels_the_rest_at_the_deadline() -> None:
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(4)]
        acks[0].set_result(None)
        loop.call_soon(acks[2].set_exception, ConnectionError("x"))
        loop.call_later(0.01, acks[3].set_result, None)
        await _settled(acks, loop.time() + 0.1)  # acks[1] never comes
        return [
            "cancelled" if a.cancelled() else "failed" if a.exception() else "acked" for a in acks
        ]

    assert asyncio.run(run()) == ["acked", "cancelled", "failed", "acked"]


@pytest.mark.parametrize("wait", ["one", "batch"])
def test_a_cancellation_falling_due_with_the_deadline_is_still_a_cancellation(
    wait: str,
) -> None:
    """A busy loop runs the caller's cancellation and the deadline's timer in one turn:
    the request is cancelled, not answered as a timeout."""

    async def run() -> str:
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(2)]
        deadline = loop.time() + 0.05
        waiter = _acknowledged_by(acks[0], loop, deadline) if wait == "one" else None
        task = asyncio.ensure_future(waiter or _settled(acks, deadline))
        await asyncio.sleep(0)  # the task is now waiting on an ack, its timer set
        loop.call_at(deadline - 0.04, task.cancel)
        time.sleep(0.1)  # noqa: ASYNC251 (stalls the loop: the cancel and the deadline fall due together)
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            return "timed out"
        return "returned"

    assert asyncio.run(run()) == "cancelled"
