"""Backoff policy for transient failures: exponential growth, a cap, and full jitter.

Pure and deterministic given the random source, so tests pin it down exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """`delay(n)` for the n-th retry (n = 1, 2, ...).

    The ceiling grows as `base * factor**(n-1)` up to `cap`; the delay is drawn
    uniformly from `[ceiling * (1 - jitter), ceiling]`. `jitter=1` is "full
    jitter": many consumers retrying against one recovering server spread out
    instead of arriving together.
    """

    base: float = 0.2
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError(f"invalid backoff {self}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")

    def ceiling(self, attempt: int) -> float:
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        # Stop multiplying once past the cap so huge attempt numbers cannot overflow.
        value = self.base
        for _ in range(attempt - 1):
            value *= self.factor
            if value >= self.cap:
                return self.cap
        return min(value, self.cap)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        top = self.ceiling(attempt)
        low = top * (1.0 - self.jitter)
        return low + (top - low) * rand()
