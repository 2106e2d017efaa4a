"""How the daemons wait: for a wake-up event, a stop, or a timeout; and which of two
copies of an object is newer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
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


@dataclass
class CreatedJobs:
    """The stages whose Job the daemon has created and the Jobs' index does not show
    yet. The run's own status write wakes the daemon, and that wake-up can come before
    the new Job's watch event: deciding then would create the Job again (a 409) and send
    the run's START twice. So the daemon waits for the Job's event, `patience` seconds
    at most (a Job deleted meanwhile is then created again)."""

    patience: float
    since: dict[str, float] = field(default_factory=dict)

    def created(self, stage: str, clock: float) -> None:
        self.since.setdefault(stage, clock)

    def wait(self, indexed: set[str], clock: float) -> float:
        """Seconds to wait for the index before deciding again (0: decide now)."""
        for stage in [s for s in self.since if s in indexed]:
            del self.since[stage]
        if not self.since:
            return 0.0
        left = min(self.since.values()) + self.patience - clock
        if left <= 0:
            self.since.clear()
            return 0.0
        return left
