"""A Pipeline's schedule and history: (Pipeline, its runs, now) -> status + what to do.

Pure: the clock comes in as `now`, so every case (missed times after an outage, DST in a
time zone, Forbid/Replace, history limits) is a unit test. Missed schedules are handled
as the CronJob controller handles them: the times between the last scheduled run (or the
Pipeline's creation) and now are counted, only the most recent one is started (at most
one catch-up run, never a burst), more than 100 of them is reported as a Warning event,
and with `startingDeadlineSeconds` only times within the deadline count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from lineagehub.api.pipeline import (
    MAX_RECENT_RUNS,
    ConcurrencyPolicy,
    ParamError,
    Pipeline,
    PipelineStatus,
    RunSummary,
    scheduled_params,
)
from lineagehub.api.pipelinerun import (
    TERMINAL_PHASES,
    ConditionStatus,
    Phase,
    set_condition,
)
from lineagehub_operator.decide import RecordEvent

#: More missed times than this is reported (as CronJob does).
MAX_MISSED = 100
CONDITION_SCHEDULE_VALID = "ScheduleValid"
#: The @ macros cron (and CronJob) accept, as the five fields they stand for.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class SeenRun:
    """A run of the Pipeline, as the operator's index saw it."""

    name: str
    phase: Phase | None
    created: datetime
    scheduled: datetime | None = None  # None: not the schedule's (by hand, or a re-run)
    completed: datetime | None = None

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL_PHASES


@dataclass
class PipelinePlan:
    status: PipelineStatus
    create: datetime | None = None  # the schedule time of the run to create now
    params: dict[str, str] = field(default_factory=dict)  # its params, filled for `create`
    cancel: list[str] = field(default_factory=list)  # active runs Replace stops
    delete: list[str] = field(default_factory=list)  # runs past the history limits
    events: list[RecordEvent] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until the next schedule time


def cron_times(expr: str, zone: str | None, after: datetime) -> Iterator[datetime]:
    """Schedule times strictly after `after`, in UTC, read in `zone` (cron's DST rules:
    a skipped time runs at the next valid minute, a repeated hour's time runs once for
    an hourly or daily field, every time for a minute field)."""
    tz = ZoneInfo(zone) if zone else UTC
    for local in CronSim(MACROS.get(expr, expr), after.astimezone(tz)):
        yield local.astimezone(UTC)


def check_schedule(expr: str, zone: str | None) -> str | None:
    """Why the schedule cannot be read, or None."""
    try:
        next(cron_times(expr, zone, datetime(2000, 1, 1, tzinfo=UTC)))
    except (CronSimError, StopIteration) as err:
        return f"spec.schedule: {expr!r} is not a cron schedule ({err or 'never fires'})"
    return None


def _history(runs: Sequence[SeenRun], succeeded: int, failed: int) -> list[str]:
    """Scheduled runs beyond the limits, oldest first (runs made by hand are never
    deleted: their authors keep them)."""
    doomed: list[str] = []
    for phases, keep in (
        ({Phase.SUCCEEDED}, succeeded),
        ({Phase.FAILED, Phase.CANCELLED}, failed),
    ):
        finished = sorted(
            (r for r in runs if r.scheduled is not None and r.phase in phases),
            key=lambda r: (r.completed or r.created, r.created, r.name),
        )
        doomed += [r.name for r in finished[: max(0, len(finished) - keep)]]
    return doomed


def _summaries(runs: Sequence[SeenRun], status: PipelineStatus) -> None:
    newest = sorted(runs, key=lambda r: (r.created, r.name), reverse=True)
    active = [r.name for r in newest if r.active]
    status.active = active[:MAX_RECENT_RUNS]
    status.active_count = len(active)
    status.last_run = newest[0].name if newest else None
    status.last_run_phase = newest[0].phase if newest else None
    status.recent_runs = [
        RunSummary(
            name=r.name,
            phase=r.phase,
            scheduled_time=r.scheduled,
            creation_time=r.created,
            completion_time=r.completed,
        )
        for r in newest[:MAX_RECENT_RUNS]
    ]


def _due(
    expr: str, zone: str | None, earliest: datetime, now: datetime
) -> tuple[datetime | None, int]:
    """The most recent schedule time in (earliest, now] and how many there are (counted
    up to MAX_MISSED + 1)."""
    last, count = None, 0
    for when in cron_times(expr, zone, earliest):
        if when > now:
            break
        last, count = when, count + 1
        if count > MAX_MISSED:
            # Too many to walk: the most recent one, found backwards from now.
            tz = ZoneInfo(zone) if zone else UTC
            start = (now + timedelta(minutes=1)).astimezone(tz)
            for back in CronSim(MACROS.get(expr, expr), start, reverse=True):
                if back.astimezone(UTC) <= now:
                    return back.astimezone(UTC), count
            break
    return last, count


def unsaid(events: Sequence[RecordEvent], said: dict[str, str]) -> list[RecordEvent]:
    """The events not said yet: each reason's last message is remembered (in `said`,
    updated), so a wait under Forbid is said once per due time, and what is remembered
    stays one message per reason however long the Pipeline lives."""
    out = []
    for event in events:
        if said.get(event.reason) != event.message:
            said[event.reason] = event.message
            out.append(event)
    return out


def plan(
    pipeline: Pipeline, runs: Sequence[SeenRun], now: datetime, created: datetime
) -> PipelinePlan:
    """What the Pipeline's status should say and which runs to create, stop and delete."""
    spec = pipeline.spec
    generation = pipeline.metadata.generation
    status = (pipeline.status or PipelineStatus()).model_copy(deep=True)
    status.observed_generation = generation
    out = PipelinePlan(status=status)
    out.delete = _history(runs, spec.successful_runs_history_limit, spec.failed_runs_history_limit)
    kept = [r for r in runs if r.name not in out.delete]
    status.next_schedule_time = None
    if spec.schedule is None:
        status.conditions = [c for c in status.conditions if c.type != CONDITION_SCHEDULE_VALID]
        _summaries(kept, status)
        return out
    problem = check_schedule(spec.schedule, spec.time_zone)
    before = next((c for c in status.conditions if c.type == CONDITION_SCHEDULE_VALID), None)
    status.conditions = set_condition(
        status.conditions,
        type_=CONDITION_SCHEDULE_VALID,
        status=ConditionStatus.FALSE if problem else ConditionStatus.TRUE,
        reason="InvalidSchedule" if problem else "Valid",
        message=problem or f"Runs on {spec.schedule!r} in {spec.time_zone or 'UTC'}",
        observed_generation=generation,
        at=now,
    )
    if problem:
        if before is None or before.message != problem:
            out.events.append(RecordEvent("Warning", "InvalidSchedule", problem))
        _summaries(kept, status)
        return out
    schedule = spec.schedule
    if not spec.suspend:
        earliest = status.last_schedule_time or created
        if spec.starting_deadline_seconds is not None:
            earliest = max(earliest, now - timedelta(seconds=spec.starting_deadline_seconds))
        due, count = _due(schedule, spec.time_zone, earliest, now)
        if count > MAX_MISSED:
            out.events.append(
                RecordEvent(
                    "Warning",
                    "TooManyMissedTimes",
                    f"more than {MAX_MISSED} schedule times were missed since"
                    f" {earliest.isoformat()}; only the latest starts. Set or decrease"
                    " spec.startingDeadlineSeconds or check the clock",
                )
            )
        # As CronJob counts only its own Jobs: runs made by hand and re-runs neither hold
        # up a scheduled run under Forbid nor get cancelled under Replace.
        active = [r.name for r in kept if r.active and r.scheduled is not None]
        if due is not None and active and spec.concurrency_policy is ConcurrencyPolicy.FORBID:
            out.events.append(
                RecordEvent(
                    "Normal",
                    "RunAlreadyActive",
                    f"The run due at {due.isoformat()} waits: {', '.join(active[:3])} still"
                    " active and concurrencyPolicy is Forbid",
                )
            )
        elif due is not None:
            status.last_schedule_time = due
            try:
                # The due time's values, not now's: a late run reads what it was due to.
                out.params = scheduled_params(pipeline, due)
            except ParamError as err:
                out.events.append(RecordEvent("Warning", "InvalidScheduleParams", str(err)))
            else:
                if spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
                    out.cancel = active
                out.create = due
            if 1 < count <= MAX_MISSED:
                out.events.append(
                    RecordEvent(
                        "Warning",
                        "MissedSchedule",
                        f"{count - 1} earlier schedule time(s) were missed; one run starts"
                        f" for the latest, {due.isoformat()}",
                    )
                )
        upcoming = next(cron_times(schedule, spec.time_zone, now))
        status.next_schedule_time = upcoming
        out.requeue_after = max(0.0, (upcoming - now).total_seconds())
    _summaries(kept, status)
    return out
