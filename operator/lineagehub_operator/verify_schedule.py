"""When the daemon of a finished run looks its records up in the stores again.

The stores get a run's last records a second or two after it ends: the stage and the
operator publish them as the run ends, the consumers batch for up to a second
(`max_batch_wait`) and then insert. So the status the run ends with has its links and
`Waiting` already, without asking (`verify.awaiting`: one status write, not two); the
stores are asked `FIRST_AFTER` seconds after the end, then every `STEP` seconds while
they are due (`DUE_UNTIL`), then less and less often (half the time since the end, up
to `MAX_DELAY`), until the verdicts or the deadline. A run an operator restart finds
ended is asked at once, then at its age's pace.

The schedule counts from the end of the run, not from the number of checks, and a
check is made only when one is due: the daemon is also woken by every change of its
run (its own status writes among them) and of its Jobs, and a wake-up is no reason to
ask the stores again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: The stores are checked this often while the run's records are due.
STEP = 0.5
#: The first check after the one at the end: the consumers' batches take about this long.
FIRST_AFTER = 1.0
#: Until then the stores are checked every `STEP`.
DUE_UNTIL = 4.0
#: The longest wait between two checks.
MAX_DELAY = 30.0


def delay_after(elapsed: float) -> float:
    """Seconds from a check made `elapsed` seconds after the run ended to the next."""
    if elapsed < FIRST_AFTER:
        return FIRST_AFTER - elapsed
    if elapsed < DUE_UNTIL:
        return STEP
    return min(MAX_DELAY, elapsed / 2)


@dataclass
class VerifySchedule:
    """The checks of one finished run, on the daemon's monotonic clock."""

    ended: float
    """When the run ended, on the daemon's monotonic clock."""
    next_check: float | None = None
    checks: int = 0

    @classmethod
    def since(cls, completion: datetime | None, now: datetime, clock: float) -> VerifySchedule:
        """A schedule for a run that ended at `completion` (its status; `now` on the wall
        clock is `clock` on the daemon's): a run an operator restart finds ended long
        ago is checked at once, then at its age's pace, not from the start again."""
        age = 0.0 if completion is None else (now - completion).total_seconds()
        return cls(ended=clock - max(0.0, age))

    @classmethod
    def at_end(cls, clock: float) -> VerifySchedule:
        """A run that ends in the daemon's pass at `clock`: its status says Waiting
        already (verify.awaiting), and the stores are first asked `FIRST_AFTER` later,
        when the consumers' batches have landed."""
        return cls(ended=clock, next_check=clock + FIRST_AFTER)

    def due(self, now: float) -> bool:
        return self.next_check is None or now >= self.next_check

    def checked(self, now: float) -> None:
        self.checks += 1
        self.next_check = now + delay_after(now - self.ended)

    def wait(self, now: float) -> float:
        """Seconds from `now` until the next check is due (0 when it is)."""
        return 0.0 if self.next_check is None else max(0.0, self.next_check - now)
