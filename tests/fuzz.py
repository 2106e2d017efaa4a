"""The hypothesis settings the property tests share: the same cases on every run (CI
never flakes on a draw), no example database left in the work tree, no deadline."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def fuzz_settings(examples: int, *also_suppress: HealthCheck) -> settings:
    """`examples` cases a test; `too_slow` and `also_suppress` health checks off."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, *also_suppress],
    )
