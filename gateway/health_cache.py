"""Dependency probes for /api/v1/health, run at most once per interval.

/api/v1/health needs no token (probes and load balancers call it), so without a
bound every caller could make the gateway reach each store: a cheap way to load
Kafka, the API server, ClickHouse and Marquez through it. Here one run of the probes
serves every caller for `interval_s`; callers arriving while a run is under way
wait for that run instead of starting another (single flight). The answer says how
old it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.health import Check


@dataclass(frozen=True)
class Verdict:
    """One run of the probes: the checks and when (on the cache's clock) it ended."""

    checks: list[Check]
    at: float


class HealthCache:
    def __init__(
        self,
        probe: Callable[[], Awaitable[list[Check]]],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self.interval_s = interval_s
        self._clock = clock
        self._last: Verdict | None = None
        self._running: asyncio.Task[Verdict] | None = None
        self.runs = 0
        """How many times the probes ran (for the gateway's own metrics and tests)."""

    async def get(self) -> tuple[list[Check], float]:
        """The checks and their age in seconds: cached when younger than the interval,
        else from one run of the probes shared by every caller waiting for it."""
        last = self._last
        if last is not None and self._clock() - last.at < self.interval_s:
            return last.checks, self._clock() - last.at
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        # shield: a caller that goes away does not cancel the run the others wait for.
        verdict = await asyncio.shield(self._running)
        return verdict.checks, max(0.0, self._clock() - verdict.at)

    async def _run(self) -> Verdict:
        self.runs += 1
        checks = await self._probe()
        verdict = Verdict(checks, self._clock())
        self._last = verdict
        return verdict
