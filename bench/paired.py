"""Paired on/off comparisons for the self-tracing benches.

Each round measures a mode and its baseline back to back, so a change in the rest of
the machine's load falls on both; the ratio of the two in each round is one sample.
The figure is the median of those ratios, with a bootstrap interval over the rounds
(resampled with replacement, the median of each resample; a fixed seed, so a run's
interval does not move when it is printed again), and beside them the ratio of the
two minimums.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RESAMPLES = 4000


@dataclass(frozen=True)
class Paired:
    """`mode` over `base` CPU per event: median of the rounds' ratios, and its 95%
    bootstrap interval, as ratios (1.05 is 5% more)."""

    median: float
    low: float
    high: float
    rounds: int
    #: The fastest round's over the fastest baseline round's: other load only ever adds
    #: CPU (contended caches, a shared core), so each minimum is the least disturbed.
    of_minimums: float

    def text(self) -> str:
        return (
            f"median paired {self.median - 1:+6.1%} "
            f"[95% CI {self.low - 1:+.1%} .. {self.high - 1:+.1%}, {self.rounds} rounds]; "
            f"min/min {self.of_minimums - 1:+.1%}"
        )


def paired(mode: Sequence[float], base: Sequence[float], seed: int = 19) -> Paired:
    """The paired ratio of `mode`'s per-round figures over `base`'s (same length, round
    i of each measured back to back)."""
    ratios = [m / b for m, b in zip(mode, base, strict=True)]
    median, low, high = bootstrap_median(ratios, seed)
    return Paired(median, low, high, len(ratios), min(mode) / min(base))


def bootstrap_median(samples: Sequence[float], seed: int = 19) -> tuple[float, float, float]:
    """The median of `samples` and its 95% bootstrap interval (`RESAMPLES` resamples
    with replacement, the median of each; a fixed seed)."""
    if not samples:
        raise ValueError("no rounds to compare")
    rng = random.Random(seed)
    n = len(samples)
    medians = sorted(statistics.median(rng.choices(samples, k=n)) for _ in range(RESAMPLES))
    low = medians[int(0.025 * RESAMPLES)]
    high = medians[int(0.975 * RESAMPLES) - 1]
    return statistics.median(samples), low, high


def per_event_us(values: Sequence[float], events: int) -> float:
    """The median round's CPU seconds over `events`, in microseconds."""
    return statistics.median(values) / events * 1e6
