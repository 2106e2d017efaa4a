"""When a finished run's daemon asks the stores again (`verify_schedule`), driven as the
daemon drives it: a run that ends in its pass is first asked `FIRST_AFTER` later (its
end's status says Waiting already), then a check whenever one is due, on any wake-up
(its own status writes, its Jobs' events) or at the end of its wait. Times are
simulated, not slept."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from lineagehub_operator.verify_schedule import (
    DUE_UNTIL,
    FIRST_AFTER,
    MAX_DELAY,
    STEP,
    VerifySchedule,
    delay_after,
)

#: The stack's verify deadline (LINEAGEHUB_VERIFY_TIMEOUT_SECONDS).
DEADLINE = 120.0


def checks_made(ready: float, wakes: list[float], deadline: float = DEADLINE) -> list[float]:
    """The times (since the run ended) of the checks the daemon makes, until a check
    finds the records (they are in the stores from `ready` on) or the deadline; the
    daemon is also woken at each of `wakes`, and once right after each check (the
    status it writes wakes it)."""
    schedule = VerifySchedule.at_end(0.0)
    pending = sorted(wakes)
    made: list[float] = []
    now = 0.0
    while now <= deadline:
        if schedule.due(now):
            made.append(now)
            schedule.checked(now)
            if now >= ready:
                return made
            pending = sorted([*pending, now + 0.001])  # woken by its own status write
        due_at = now + schedule.wait(now)
        later = [w for w in pending if w > now]
        now = min([due_at, *later])
    return made


def test_the_first_checks_follow_the_consumers_batches() -> None:
    """None at the end itself (the stores cannot hold the run's last records yet)."""
    assert checks_made(ready=2.1, wakes=[]) == [1.0, 1.5, 2.0, 2.5]
    assert checks_made(ready=0.0, wakes=[]) == [1.0]
    assert checks_made(ready=0.0, wakes=[0.0, 0.001, 0.5]) == [1.0]


def test_the_old_count_based_backoff_is_gone() -> None:
    """Before, each check doubled the next wait and a wake-up made a check: a run's own
    status write and its last Jobs' events spent the short waits, and records that
    landed 2 s after the end were seen 7 s after it. Now they are seen at 2.5 s."""
    wakes = [0.4, 0.5, 1.2]  # the last Jobs' Complete events, a status write
    made = checks_made(ready=2.1, wakes=wakes)
    assert made[-1] == 2.5
    assert len(made) == len(checks_made(ready=2.1, wakes=[]))


@given(
    ready=st.floats(min_value=0.0, max_value=DEADLINE - MAX_DELAY),
    wakes=st.lists(st.floats(min_value=0.0, max_value=DEADLINE), max_size=40),
)
def test_wake_ups_never_add_checks(ready: float, wakes: list[float]) -> None:
    assert checks_made(ready, wakes) == checks_made(ready, [])


@given(ready=st.floats(min_value=0.0, max_value=DEADLINE - MAX_DELAY))
def test_records_are_seen_soon_after_they_land(ready: float) -> None:
    """Within `STEP` while they are due, then within half the time since the end (capped)."""
    made = checks_made(ready, [])
    seen = made[-1]
    assert seen >= ready
    if ready <= FIRST_AFTER:
        assert seen <= FIRST_AFTER
    elif ready <= DUE_UNTIL:
        assert seen <= ready + STEP
    else:
        assert seen <= ready + min(MAX_DELAY, ready / 2) + STEP


def test_the_stores_are_not_hammered() -> None:
    """Never two checks within `STEP`; a run whose records never come costs a bounded
    number of checks until the deadline, wake-ups or not."""
    made = checks_made(ready=float("inf"), wakes=[i * 0.05 for i in range(2400)])
    assert all(b - a >= STEP for a, b in itertools.pairwise(made))
    # 1.0 .. 4.0 every 0.5 s, then growing by half: 6, 9, 13.5, ... 102.5
    assert len(made) == 15, made
    assert made[:7] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]


def test_the_wait_grows_to_its_cap() -> None:
    assert delay_after(0.0) == FIRST_AFTER
    assert delay_after(0.3) == FIRST_AFTER - 0.3
    assert delay_after(3.9) == STEP
    assert delay_after(10.0) == 5.0
    assert delay_after(600.0) == MAX_DELAY


def test_a_run_found_ended_long_ago_keeps_its_ages_pace() -> None:
    """An operator restart finds an unverified run that ended 60 s ago: checked at once,
    then 30 s later (half its age), not again every 0.5 s as for a run just ended."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    schedule = VerifySchedule.since(now - timedelta(seconds=60), now, clock=1000.0)
    assert schedule.due(1000.0)
    schedule.checked(1000.0)
    assert schedule.wait(1000.0) == MAX_DELAY
    fresh = VerifySchedule.since(now, now, clock=1000.0)
    fresh.checked(1000.0)
    assert fresh.wait(1000.0) == FIRST_AFTER


def test_a_run_without_an_end_time_or_ending_in_the_future_starts_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    for completion in (None, now + timedelta(seconds=5)):  # a clock skewed ahead
        schedule = VerifySchedule.since(completion, now, clock=50.0)
        assert schedule.ended == 50.0
