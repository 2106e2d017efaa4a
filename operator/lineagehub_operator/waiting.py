"""How the daemons wait: for a wake-up event, a stop, or a timeout; and which of two
copies of an object is newer."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf


def resource_version(obj: dict[str, Any] | kopf.Body) -> int:
    """The object's resourceVersion as a number (0 when there is none)."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return 0


def newer(body: kopf.Body, written: dict[str, Any]) -> dict[str, Any]:
    """The live body, unless our own last write (`written`) is newer: the watch may lag."""
    return dict(body) if resource_version(body) >= resource_version(written) else written


async def sleep_until_woken(
    waker: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float
) -> None:
    """Until `waker` is set, the daemon is asked to stop, or `seconds` pass."""
    woken = asyncio.ensure_future(waker.wait())
    halted = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, halted}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        halted.cancel()
