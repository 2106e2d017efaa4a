"""The operator's one reconcile rule: (run, observed Jobs, now) -> new status + actions.

Pure: no I/O, no clock, no randomness (ids and time come in as arguments), so
every transition is a table-driven unit test. The daemon executes the actions
and writes the status; running `decide` again on the result is a no-op, which
is what makes an operator restart at any point safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import ValidationError

from lineagehub.api.pipelinerun import (
    CONDITION_LINEAGE_RECORDED,
    CONDITION_SUCCEEDED,
    CONDITION_TRACE_RECORDED,
    STAGES,
    TERMINAL_PHASES,
    Condition,
    ConditionStatus,
    Phase,
    PipelineRun,
    PipelineRunStatus,
    QualityVerdict,
    Reason,
    StageName,
    StageStatus,
    progress,
    set_condition,
)
from lineagehub.datasets import redact_text
from lineagehub.telemetry.spans import caller_context
from lineagehub_operator.naming import job_name
from lineagehub_operator.observed import JobState, ObservedJob, StageResult

EventType = Literal["Normal", "Warning"]
LineageEventType = Literal["START", "COMPLETE", "FAIL", "ABORT"]


@dataclass(frozen=True)
class RunIds:
    """Fresh identifiers, used only when a run is first seen."""

    run_id: str
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class CreateJob:
    stage: StageName


@dataclass(frozen=True)
class DeleteJob:
    stage: StageName
    name: str


@dataclass(frozen=True)
class RecordEvent:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class EmitRunEvent:
    """The run-level OpenLineage event and, at the end, the root span."""

    event_type: LineageEventType


@dataclass(frozen=True)
class DeleteRun:
    """`ttlSecondsAfterFinished` has passed."""


Action = CreateJob | DeleteJob | RecordEvent | EmitRunEvent | DeleteRun


@dataclass
class Decision:
    status: PipelineRunStatus
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until decide must run again without events

    @property
    def terminal(self) -> bool:
        return self.status.phase in TERMINAL_PHASES


def _ms(now: datetime) -> datetime:
    """`now` truncated to the millisecond, as the status keeps a precise time: the pass
    that records a time sees the value a later pass reads back, and so publishes the
    same event or span from it."""
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _initial_status(run: PipelineRun, ids: RunIds, now: datetime) -> PipelineRunStatus:
    # Resolved before the ids: a pipelineRef run's spec snapshot, a re-run's earlier run
    # and the stages it reuses from it. Kept as they are.
    resolved = run.status or PipelineRunStatus()
    stages = list(resolved.stages) if resolved.rerun_of else [StageStatus(name=s) for s in STAGES]
    # A run created by a traced call (the gateway's annotation) continues that trace.
    caller = caller_context(run.metadata.annotations)
    trace_id = caller[0] if caller else ids.trace_id
    status = PipelineRunStatus(
        phase=Phase.PENDING,
        run_id=ids.run_id,
        trace_id=trace_id,
        traceparent=f"00-{trace_id}-{ids.span_id}-01",
        start_time=now,
        start_time_precise=_ms(now),
        stages=stages,
        progress=progress(stages),
        observed_generation=run.metadata.generation,
        pipeline_spec=resolved.pipeline_spec,
        rerun_of=resolved.rerun_of,
    )
    status.conditions = set_condition(
        [],
        type_=CONDITION_SUCCEEDED,
        status=ConditionStatus.UNKNOWN,
        reason=Reason.STARTED,
        message="Run accepted; stages not started yet",
        observed_generation=run.metadata.generation,
        at=now,
    )
    return status


def accepted(run: PipelineRun, ids: RunIds, now: datetime) -> PipelineRunStatus:
    """The status a run gets when it is first seen: its ids, Pending. The daemon decides
    on it in the same pass and writes both in one status write, before any action."""
    return _initial_status(run, ids, now)


def _stage(status: PipelineRunStatus, name: StageName) -> StageStatus:
    found = status.stage(name)
    if found is None:
        found = StageStatus(name=name)
        status.stages = [*status.stages, found]
        status.stages.sort(key=lambda s: s.name.position)
    return found


def _first_own_stage(status: PipelineRunStatus, stage: StageName) -> bool:
    """No stage before `stage` ran in this run (a re-run's reused stages ran in the
    earlier one): creating its Job starts the run."""
    return all(s.reason == Reason.REUSED for s in status.stages if s.name.position < stage.position)


def _set_succeeded(
    status: PipelineRunStatus,
    cond: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> None:
    status.conditions = set_condition(
        status.conditions,
        type_=CONDITION_SUCCEEDED,
        status=cond,
        reason=reason,
        message=message,
        observed_generation=generation,
        at=now,
    )


def _failure(job: ObservedJob) -> tuple[Reason, str]:
    result = job.result
    if job.failure_reason == "DeadlineExceeded" or job.pod_reason == "DeadlineExceeded":
        return Reason.STAGE_TIMEOUT, f"stage {job.stage} exceeded its timeout"
    detail = (result.error if result and result.error else None) or job.failure_message or ""
    detail = redact_text(detail)  # a stage's error may quote a URI with its credentials
    if result is not None and result.quality_failed:
        return Reason.QUALITY_CHECK_FAILED, detail or f"stage {job.stage}: a quality check failed"
    tries = f" after {job.attempts} attempt{'s' if job.attempts != 1 else ''}"
    return Reason.STAGE_FAILED, f"stage {job.stage} failed{tries}: {detail}".rstrip(": ")


def _pod_done(job: ObservedJob) -> bool:
    """A single-pod Job not Complete yet whose pod exited 0 with its result readable:
    with one completion to make, that pod's success is the Job's. Without a JSON
    termination message the Job's Complete condition is waited for, as for any Job."""
    return (
        job.state == JobState.ACTIVE
        and job.pod_succeeded
        and job.shards == 1
        and job.result is not None
        and job.result.raw is not None
    )


def _verdicts(result: StageResult) -> list[QualityVerdict] | None:
    """The checks a stage reported, minus what the status does not keep (samples)."""
    verdicts = []
    for check in result.quality:
        try:
            verdicts.append(QualityVerdict.model_validate(check))
        except ValidationError:
            continue  # a newer runner's check kind: the termination message still has it
    return verdicts or None


def _stage_events(old: PipelineRunStatus | None, new: PipelineRunStatus) -> list[Action]:
    """A Kubernetes Event for every stage whose phase changed."""
    events: list[Action] = []
    for stage in new.stages:
        before = old.stage(stage.name) if old else None
        if before is not None and before.phase == stage.phase:
            continue
        if stage.phase == Phase.RUNNING:
            events.append(
                RecordEvent(
                    "Normal", "StageStarted", f"Stage {stage.name} started (Job {stage.job_name})"
                )
            )
        elif stage.phase == Phase.SUCCEEDED:
            rows = f", {stage.records_out} records out" if stage.records_out is not None else ""
            events.append(
                RecordEvent("Normal", "StageSucceeded", f"Stage {stage.name} succeeded{rows}")
            )
        elif stage.phase == Phase.FAILED:
            events.append(
                RecordEvent(
                    "Warning",
                    stage.reason or "StageFailed",
                    f"Stage {stage.name} failed: {stage.message or ''}".rstrip(": "),
                )
            )
        elif stage.phase == Phase.CANCELLED:
            events.append(RecordEvent("Normal", "StageCancelled", f"Stage {stage.name} cancelled"))
    return events


End = tuple[datetime, datetime | None]
"""A time as the status keeps it: (whole-second field, millisecond field or None)."""


def _stage_end(entry: StageStatus, job: ObservedJob, now: datetime) -> End:
    """When a stage whose Job (or single pod) stopped ended, from what Kubernetes keeps,
    so that every pass deciding on it finds the same end, whenever it runs: the time its
    pod wrote in its termination message (`finishedAt`, to the millisecond, never before
    the stage's recorded start); else the Job's, or its pod's, whole-second time, with
    no made-up milliseconds; the pass's own time only when Kubernetes recorded none."""
    reported = job.result.finished_at if job.result is not None else None
    if reported is not None:
        end = _ms(reported)
        if entry.start_time_precise is not None:
            end = max(end, entry.start_time_precise)  # the node's clock behind ours
        return end, end
    if job.completion_time is not None:
        return job.completion_time, None
    return now, _ms(now)


def _last_end(status: PipelineRunStatus, now: datetime) -> End:
    """The run's end when its last stage has ended: that stage's recorded end (the
    latest of its stages'), so that a pass deciding the end again after the status
    write that recorded it was lost (a restart, a conflict) sends the very same
    COMPLETE or FAIL and root span. The pass's own time when no stage has an end."""
    ended = [
        s for s in status.stages if s.completion_time is not None and s.reason != Reason.REUSED
    ]
    if not ended:
        return now, _ms(now)
    last = max(ended, key=lambda s: s.completion_time_precise or s.completion_time or now)
    assert last.completion_time is not None
    return last.completion_time, last.completion_time_precise


def _finish(
    status: PipelineRunStatus,
    phase: Phase,
    reason: Reason,
    message: str,
    generation: int | None,
    now: datetime,
    end: End,
) -> list[Action]:
    """The run ends at `end`, recorded before it was decided (see `_last_end`, and
    `_cancel` for a cancelled run): the events sent for it are the same bytes on
    every pass that sends them. `now` is only the condition's transition time."""
    status.phase = phase
    start = status.start_time_precise or status.start_time
    whole, precise = end
    status.completion_time = whole if start is None else max(whole, start)
    status.completion_time_precise = (
        precise if precise is None or start is None else max(precise, start)
    )
    status.current_stage = None
    cond = ConditionStatus.TRUE if phase == Phase.SUCCEEDED else ConditionStatus.FALSE
    _set_succeeded(status, cond, reason, message, generation, now)
    lineage: LineageEventType = {Phase.SUCCEEDED: "COMPLETE", Phase.FAILED: "FAIL"}.get(
        phase, "ABORT"
    )  # type: ignore[assignment]
    kind: EventType = "Normal" if phase == Phase.SUCCEEDED else "Warning"
    return [EmitRunEvent(lineage), RecordEvent(kind, reason.value, message)]


def ended_at(status: PipelineRunStatus) -> datetime | None:
    """When the operator decided the run's end: the Succeeded condition's move to True or
    False (the pass's own time), else `completionTime`. A run's `completionTime` is its
    last stage's end as the stage's pod said it (see `_last_end`), which can be long
    before an operator that was away decided the end: the stores' deadline and the TTL
    count from the decision, not from that."""
    condition = status.condition(CONDITION_SUCCEEDED)
    if (
        status.phase in TERMINAL_PHASES
        and condition is not None
        and condition.status != ConditionStatus.UNKNOWN
    ):
        return condition.last_transition_time
    return status.completion_time


def _ttl(
    run: PipelineRun, status: PipelineRunStatus, now: datetime
) -> tuple[list[Action], float | None]:
    ttl = run.spec.ttl_seconds_after_finished
    ended = ended_at(status)
    if ttl is None or ended is None:
        return [], None
    due = ended + timedelta(seconds=ttl)
    if now >= due:
        return [DeleteRun()], None
    return [], (due - now).total_seconds()


def _cancelling(status: PipelineRunStatus) -> bool:
    """The run's cancel has been recorded (its end time, see `_cancel`), not its end."""
    return status.phase not in TERMINAL_PHASES and status.completion_time is not None


def _cancel(
    run: PipelineRun,
    old: PipelineRunStatus,
    status: PipelineRunStatus,
    jobs: Mapping[StageName, ObservedJob],
    now: datetime,
) -> Decision:
    """`spec.cancel`, in two passes. The first stops the stages' Jobs and records the
    cancel's time as the run's end (and the running stage's), Succeeded still Unknown;
    the second sends ABORT and writes the run Cancelled at that recorded time. Nothing
    else records when a cancel happened: a pass that sent ABORT and whose write was lost
    would otherwise send another ABORT at its own time. Once recorded, the run is
    cancelled even if `spec.cancel` is taken back."""
    generation = run.metadata.generation
    actions: list[Action] = []
    for stage in STAGES:
        job = jobs.get(stage)
        entry = _stage(status, stage)
        if entry.phase == Phase.SUCCEEDED:
            continue  # its pod succeeded: its Job completes and goes by its TTL
        active = job is not None and job.state == JobState.ACTIVE
        if active and job is not None and not job.deleting:
            actions.append(DeleteJob(stage, job.name))
        if entry.phase == Phase.CANCELLED:
            continue  # recorded by the first pass
        if active or entry.phase == Phase.RUNNING:
            entry.completion_time, entry.completion_time_precise = now, _ms(now)
        entry.phase = Phase.CANCELLED
    status.progress = progress(status.stages)
    if not _cancelling(status):
        status.completion_time, status.completion_time_precise = now, _ms(now)
        _set_succeeded(
            status,
            ConditionStatus.UNKNOWN,
            Reason.CANCELLED,
            "Cancelling (spec.cancel): stopping the run's stages",
            generation,
            now,
        )
        return Decision(status, [*_stage_events(old, status), *actions], requeue_after=0)
    assert status.completion_time is not None
    end = (status.completion_time, status.completion_time_precise)
    actions += _finish(
        status,
        Phase.CANCELLED,
        Reason.CANCELLED,
        "Run cancelled by spec.cancel",
        generation,
        now,
        end,
    )
    return _ended(run, old, status, actions, now)


def _ended(
    run: PipelineRun,
    old: PipelineRunStatus,
    status: PipelineRunStatus,
    actions: list[Action],
    now: datetime,
) -> Decision:
    """The decision of a run just ended (`status`, with its ending `actions`): its
    progress, its stages' events against `old`, and its expiry by its TTL."""
    status.progress = progress(status.stages)
    expiry, requeue = _ttl(run, status, now)
    return Decision(status, [*_stage_events(old, status), *actions, *expiry], requeue)


def decide(
    run: PipelineRun,
    jobs: Mapping[StageName, ObservedJob],
    now: datetime,
    ids: RunIds,
    queued: str | None = None,
) -> Decision:
    """Compute the run's next status and the actions that get it there. `queued` says
    why a run that has not started must wait for a slot (the active-run limits)."""
    old = run.status
    generation = run.metadata.generation
    if old is None or old.run_id is None:
        # Persist ids before anything is emitted or created: a restart reuses them.
        return Decision(_initial_status(run, ids, now), requeue_after=0)

    status = old.model_copy(deep=True)
    status.observed_generation = generation
    if status.phase in TERMINAL_PHASES:
        expiry, requeue = _ttl(run, status, now)
        return Decision(status, expiry, requeue)

    if _cancelling(status):
        return _cancel(run, old, status, jobs, now)
    if run.spec.cancel:
        # A cancel seen once the stages' Jobs had ended the run leaves that end: a pass
        # that sent COMPLETE or FAIL and whose status write was lost must not send ABORT
        # after it (what the Jobs say is the same on every pass).
        ended = _advance(run, old, status.model_copy(deep=True), jobs, now, queued)
        return _too_late(ended) if ended.terminal else _cancel(run, old, status, jobs, now)
    return _advance(run, old, status, jobs, now, queued)


def _too_late(ended: Decision) -> Decision:
    """The run's end, with an event saying its cancel came too late."""
    note = RecordEvent(
        "Normal",
        "CancelTooLate",
        f"spec.cancel came after the run's stages had ended: the run {ended.status.phase}",
    )
    return Decision(ended.status, [*ended.actions, note], ended.requeue_after)


def _advance(
    run: PipelineRun,
    old: PipelineRunStatus,
    status: PipelineRunStatus,
    jobs: Mapping[StageName, ObservedJob],
    now: datetime,
    queued: str | None,
) -> Decision:
    """The run's next step from its stages' Jobs: the next Job, a stage's end, the
    run's end."""
    generation = run.metadata.generation
    actions: list[Action] = []
    for stage in STAGES:
        entry = _stage(status, stage)
        job = jobs.get(stage)
        if entry.phase == Phase.SUCCEEDED:
            # Decided once, from its Job or its pod: a Job removed since, or one the Job
            # controller marks later (Complete, or DeadlineExceeded when its deadline
            # passed before that sync), does not change what the stage did.
            continue
        if job is None:
            if run.spec.suspend:
                status.current_stage = stage
                _set_succeeded(
                    status,
                    ConditionStatus.UNKNOWN,
                    Reason.SUSPENDED,
                    f"Suspended before stage {stage}",
                    generation,
                    now,
                )
                before = old.condition()
                if before is None or before.reason != Reason.SUSPENDED:
                    actions.append(
                        RecordEvent("Normal", "Suspended", f"Run suspended before stage {stage}")
                    )
                break
            if status.phase == Phase.PENDING and queued is not None:
                _set_succeeded(
                    status, ConditionStatus.UNKNOWN, Reason.QUEUED, queued, generation, now
                )
                before = old.condition()
                if before is None or before.reason != Reason.QUEUED:
                    actions.append(RecordEvent("Normal", Reason.QUEUED.value, queued))
                break
            if status.phase == Phase.PENDING or _first_own_stage(status, stage):
                # The run's first Job (extract, or a re-run's first stage): it starts.
                # (Again after a restart, or its Job deleted, that finds the stage marked
                # running without its Job: the status may have been written before the
                # event was sent. The event is made from the persisted status, so the
                # copies are the same bytes and the stores keep one.)
                actions.append(EmitRunEvent("START"))
            actions.append(CreateJob(stage))
            entry.phase = Phase.RUNNING
            entry.job_name = job_name(run.metadata.name or "", stage)
            if entry.start_time is None:
                entry.start_time, entry.start_time_precise = now, _ms(now)
            entry.attempts = max(entry.attempts, 1)
            status.phase = Phase.RUNNING
            status.current_stage = stage
            _set_succeeded(
                status,
                ConditionStatus.UNKNOWN,
                Reason.RUNNING,
                f"Stage {stage} running",
                generation,
                now,
            )
            break
        entry.job_name = job.name
        entry.attempts = max(entry.attempts, job.attempts)
        if entry.start_time is None:
            # Not recorded when the Job was created: the Job's own (whole-second) start.
            entry.start_time = job.start_time or now
            entry.start_time_precise = None if job.start_time else _ms(now)
        if job.state == JobState.ACTIVE and not _pod_done(job):
            entry.phase = Phase.RUNNING
            status.phase = Phase.RUNNING
            status.current_stage = stage
            retrying = job.attempts > 1
            reason = Reason.RETRYING if retrying else Reason.RUNNING
            note = f" (attempt {job.attempts})" if retrying else ""
            _set_succeeded(
                status,
                ConditionStatus.UNKNOWN,
                reason,
                f"Stage {stage} running{note}",
                generation,
                now,
            )
            break
        if job.result is not None:
            entry.records_in = job.result.records_in
            entry.records_out = job.result.records_out
            entry.quality = _verdicts(job.result) or entry.quality
            entry.columns = list(job.result.columns) or entry.columns
        if entry.completion_time is None:
            entry.completion_time, entry.completion_time_precise = _stage_end(entry, job, now)
        if job.state == JobState.COMPLETE or _pod_done(job):
            entry.phase = Phase.SUCCEEDED
            entry.reason = None
            entry.message = None
            continue
        reason, message = _failure(job)
        entry.phase = Phase.FAILED
        entry.reason = reason
        entry.message = message
        end = _last_end(status, now)
        actions += _finish(status, Phase.FAILED, reason, message, generation, now, end)
        break
    else:
        if status.phase not in TERMINAL_PHASES:
            actions += _finish(
                status,
                Phase.SUCCEEDED,
                Reason.SUCCEEDED,
                f"Stages completed: {len(STAGES)}/{len(STAGES)}",
                generation,
                now,
                _last_end(status, now),
            )

    status.progress = progress(status.stages)
    requeue = None
    if status.phase in TERMINAL_PHASES:
        ttl_actions, requeue = _ttl(run, status, now)
        actions += ttl_actions
    return Decision(status, [*_stage_events(old, status), *actions], requeue)


def nothing_to_record(
    conditions: list[Condition],
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """LineageRecorded and TraceRecorded False: the run ended before any stage ran, so
    there is nothing for the stores to hold and nothing to wait for."""
    for kind in (CONDITION_LINEAGE_RECORDED, CONDITION_TRACE_RECORDED):
        conditions = set_condition(
            conditions,
            type_=kind,
            status=ConditionStatus.FALSE,
            reason=reason,
            message=message,
            observed_generation=generation,
            at=now,
        )
    return conditions


def refuse(
    run: PipelineRun, message: str, now: datetime, refused: Decision | None = None
) -> Decision:
    """The run ends `Failed` with reason `PolicyViolation` instead of starting its next
    stage: no Job is created. A run refused before any stage ran has produced no lineage
    and no trace, so both are recorded as not expected rather than waited for.

    `refused`: the decision that would have started that stage. What it saw of the
    stages before (the one that just ended, with its end as its pod said) is kept, not
    the stage it would have started: the run ends when its last stage did, so a pass
    refusing it again (its write lost) sends the same FAIL."""
    old = run.status
    assert old is not None and old.run_id is not None, "status is initialised first"
    status = (refused.status if refused is not None else old).model_copy(deep=True)
    for action in refused.actions if refused is not None else []:
        if isinstance(action, CreateJob):
            unstarted = old.stage(action.stage) or StageStatus(name=action.stage)
            status.stages = [unstarted if s.name == action.stage else s for s in status.stages]
    generation = run.metadata.generation
    status.observed_generation = generation
    started = any(s.phase != Phase.PENDING for s in status.stages)
    end = _last_end(status, now)
    actions = _finish(status, Phase.FAILED, Reason.POLICY_VIOLATION, message, generation, now, end)
    if not started:
        actions = [a for a in actions if not isinstance(a, EmitRunEvent)]
        status.conditions = nothing_to_record(
            status.conditions,
            Reason.POLICY_VIOLATION,
            "The run was refused before any stage ran: it has no lineage or trace to record",
            generation,
            now,
        )
    return _ended(run, old, status, actions, now)


def workspace_lost(run: PipelineRun, stage: StageName, message: str, now: datetime) -> Decision:
    """The run ends `Failed` with reason `WorkspaceLost`: its workspace claim is gone
    and `stage`'s pod can never be scheduled (workspace_loss.py). The stage's Job is
    deleted; the stage, which never ran, ends when it was started, and so does the run
    (no earlier stage ended later): a pass deciding this again (its write lost) sends
    the same FAIL."""
    old = run.status
    assert old is not None and old.run_id is not None, "status is initialised first"
    status = old.model_copy(deep=True)
    generation = run.metadata.generation
    status.observed_generation = generation
    entry = _stage(status, stage)
    actions: list[Action] = []
    if entry.job_name:
        actions.append(DeleteJob(stage, entry.job_name))
    if entry.start_time is None:
        entry.start_time, entry.start_time_precise = now, _ms(now)
    entry.phase = Phase.FAILED
    entry.reason = Reason.WORKSPACE_LOST
    entry.message = message
    entry.completion_time = entry.start_time
    entry.completion_time_precise = entry.start_time_precise
    end = _last_end(status, now)
    actions += _finish(status, Phase.FAILED, Reason.WORKSPACE_LOST, message, generation, now, end)
    return _ended(run, old, status, actions, now)


__all__ = [
    "Action",
    "CreateJob",
    "Decision",
    "DeleteJob",
    "DeleteRun",
    "EmitRunEvent",
    "RecordEvent",
    "RunIds",
    "accepted",
    "decide",
    "nothing_to_record",
    "refuse",
    "workspace_lost",
]
