from __future__ import annotations

import pytest

from consumers.retry import Backoff


def test_ceiling_grows_exponentially_then_caps() -> None:
    b = Backoff(base=0.5, factor=2.0, cap=3.0)
    assert [b.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert Backoff(base=1, factor=10, cap=60).ceiling(10_000) == 60


def test_full_jitter_spans_zero_to_ceiling() -> None:
    b = Backoff(base=1.0, factor=2.0, cap=10.0, jitter=1.0)
    assert b.delay(3, rand=lambda: 0.0) == 0.0
    assert b.delay(3, rand=lambda: 1.0) == 4.0
    assert b.delay(3, rand=lambda: 0.5) == 2.0


def test_partial_jitter_keeps_a_floor() -> None:
    b = Backoff(base=1.0, factor=2.0, cap=10.0, jitter=0.25)
    assert b.delay(2, rand=lambda: 0.0) == pytest.approx(1.5)
    assert b.delay(2, rand=lambda: 1.0) == pytest.approx(2.0)


def test_no_jitter_is_deterministic() -> None:
    b = Backoff(base=0.1, factor=3.0, cap=100.0, jitter=0.0)
    assert b.delay(3) == pytest.approx(0.9)


def test_random_delays_stay_in_bounds() -> None:
    b = Backoff(base=0.2, factor=2.0, cap=5.0)
    for attempt in range(1, 20):
        assert 0.0 <= b.delay(attempt) <= b.ceiling(attempt) <= 5.0


@pytest.mark.parametrize(
    "kwargs",
    [{"base": 0}, {"factor": 0.5}, {"base": 2.0, "cap": 1.0}, {"jitter": 1.5}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        Backoff().delay(0)
