"""`decide` in full: every field of the status and every action a transition produces.

The table tests in test_operator_decide.py check the transitions; these pin down what a
person and the stores see of each one (condition messages, observedGeneration, times,
the Kubernetes Events, requeue), so a slip there fails a test (`make mutation` found
each of these unchecked).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from lineagehub_operator.decide import (
    CreateJob,
    Decision,
    DeleteJob,
    DeleteRun,
    EmitRunEvent,
    RecordEvent,
    decide,
    refuse,
)
from lineagehub_operator.observed import JobState, StageResult

from lineagehub.api.pipelinerun import (
    CONDITION_LINEAGE_RECORDED,
    CONDITION_SUCCEEDED,
    CONDITION_TRACE_RECORDED,
    Phase,
    PipelineRun,
    PipelineRunStatus,
    StageStatus,
)
from tests.unit.test_operator_decide import IDS, T0, E, L, T, job, make_run, step

T1 = T0 + timedelta(seconds=7)
T2 = T0 + timedelta(seconds=20)
GEN = 3  # not the default 1, so a generation that is not passed on shows


def run_of(**spec: Any) -> PipelineRun:
    run = make_run(**spec)
    return run.model_copy(update={"metadata": run.metadata.model_copy(update={"generation": GEN})})


def with_spec(run: PipelineRun, **changes: Any) -> PipelineRun:
    return run.model_copy(update={"spec": run.spec.model_copy(update=changes)})


def accepted(**spec: Any) -> PipelineRun:
    run = run_of(**spec)
    return run.model_copy(update={"status": decide(run, {}, T0, IDS).status})


def cond(status: PipelineRunStatus, kind: str = CONDITION_SUCCEEDED) -> dict[str, Any]:
    found = status.condition(kind)
    assert found is not None, kind
    return found.model_dump(mode="json", by_alias=True, exclude_none=True)


def stage(d: Decision, name: Any) -> StageStatus:
    entry = d.status.stage(name)
    assert entry is not None
    return entry


def test_a_new_run_is_accepted_with_its_time_and_generation() -> None:
    d = decide(run_of(), {}, T1, IDS)
    assert d.status.start_time == T1
    assert d.status.observed_generation == GEN
    assert cond(d.status) == {
        "type": "Succeeded",
        "status": "Unknown",
        "reason": "Started",
        "message": "Run accepted; stages not started yet",
        "observedGeneration": GEN,
        "lastTransitionTime": "2026-11-26T12:00:07Z",
    }


def test_the_first_stage_starts_with_exactly_its_event_lineage_start_and_job() -> None:
    _, d = step(accepted(), {}, T1)
    assert d.actions == [
        RecordEvent("Normal", "StageStarted", "Stage extract started (Job orders-extract)"),
        EmitRunEvent("START"),
        CreateJob(E),
    ]
    assert d.requeue_after is None
    entry = stage(d, E)
    assert (entry.phase, entry.attempts, entry.start_time) == (Phase.RUNNING, 1, T1)
    assert d.status.current_stage == E
    assert cond(d.status)["message"] == "Stage extract running"
    assert cond(d.status)["observedGeneration"] == GEN


def test_a_running_job_keeps_its_name_stage_and_first_attempt_reason() -> None:
    run, _ = step(accepted(), {}, T1)
    _, d = step(run, {E: job(E, JobState.ACTIVE)}, T2)
    entry = stage(d, E)
    assert (entry.job_name, entry.start_time, entry.attempts) == ("orders-extract", T1, 1)
    assert d.status.current_stage == E
    assert (cond(d.status)["reason"], cond(d.status)["message"]) == (
        "Running",
        "Stage extract running",
    )
    assert cond(d.status)["observedGeneration"] == GEN
    assert d.requeue_after is None


def test_a_retried_job_says_which_attempt() -> None:
    run, _ = step(accepted(), {}, T1)
    _, d = step(run, {E: job(E, JobState.ACTIVE, attempts=3)}, T2)
    assert (cond(d.status)["reason"], cond(d.status)["message"]) == (
        "Retrying",
        "Stage extract running (attempt 3)",
    )


def test_a_job_found_before_its_stage_was_recorded_takes_the_jobs_start_time() -> None:
    """The operator created the Job and died before writing the status: the stage is
    adopted with the Job's own start time, not the time the operator came back."""
    adopted = replace(job(E, JobState.ACTIVE), name="orders-extract-adopted")
    _, d = step(accepted(), {E: adopted}, T2)
    entry = stage(d, E)
    assert (entry.job_name, entry.start_time, entry.phase) == (
        "orders-extract-adopted",
        T0,
        Phase.RUNNING,
    )
    assert d.actions == [
        RecordEvent("Normal", "StageStarted", "Stage extract started (Job orders-extract-adopted)")
    ]


def test_a_finished_stage_records_its_counts_columns_and_time_and_says_so() -> None:
    run, _ = step(accepted(), {}, T0)
    run, _ = step(run, {E: job(E, JobState.ACTIVE)}, T0)
    result = StageResult(records_in=10, records_out=9, columns=("id", "total"))
    done = job(E, JobState.COMPLETE, result=result, completion_time=T1)
    _, d = step(run, {E: done}, T2)
    entry = stage(d, E)
    assert (entry.records_in, entry.records_out, entry.columns) == (10, 9, ["id", "total"])
    assert (entry.completion_time, entry.reason, entry.message) == (T1, None, None)
    assert d.actions == [
        RecordEvent("Normal", "StageSucceeded", "Stage extract succeeded, 9 records out"),
        RecordEvent("Normal", "StageStarted", "Stage transform started (Job orders-transform)"),
        CreateJob(T),
    ]
    assert d.status.current_stage == T
    # Without counts (a Job without a termination message): no count, the time it was seen.
    _, d = step(run, {E: job(E, JobState.COMPLETE)}, T2)
    assert d.actions[0] == RecordEvent("Normal", "StageSucceeded", "Stage extract succeeded")
    assert stage(d, E).completion_time == T2


def test_an_unknown_quality_check_kind_does_not_hide_the_ones_after_it() -> None:
    checks = (
        {"type": "future_check", "column": "id", "severity": "fail", "success": True},
        {"type": "not_null", "column": "id", "severity": "fail", "success": True, "failedRows": 0},
    )  # fmt: skip
    result = StageResult(records_in=1, records_out=1, quality=checks)
    _, d = step(accepted(), {E: job(E, JobState.COMPLETE, result=result)})
    quality = stage(d, E).quality
    assert quality is not None and [(q.column, q.success) for q in quality] == [("id", True)]


def test_the_whole_run_succeeds_with_exactly_these_events() -> None:
    run, _ = step(accepted(), {}, T0)
    jobs = {s: job(s, JobState.COMPLETE, completion_time=T1) for s in (E, T, L)}
    _, d = step(run, jobs, T2)
    assert d.actions == [
        RecordEvent("Normal", "StageSucceeded", "Stage extract succeeded"),
        RecordEvent("Normal", "StageSucceeded", "Stage transform succeeded"),
        RecordEvent("Normal", "StageSucceeded", "Stage load succeeded"),
        EmitRunEvent("COMPLETE"),
        RecordEvent("Normal", "Succeeded", "Stages completed: 3/3"),
    ]
    assert cond(d.status) == {
        "type": "Succeeded",
        "status": "True",
        "reason": "Succeeded",
        "message": "Stages completed: 3/3",
        "observedGeneration": GEN,
        "lastTransitionTime": "2026-11-26T12:00:20Z",
    }
    assert d.requeue_after is None


def _failed(observed: Any) -> Decision:
    run, _ = step(accepted(), {}, T0)
    run, _ = step(run, {E: job(E, JobState.COMPLETE), T: job(T, JobState.ACTIVE)}, T0)
    _, d = step(run, {E: job(E, JobState.COMPLETE), T: observed}, T2)
    return d


def test_a_failed_stage_names_its_attempts_and_error_everywhere() -> None:
    error = StageResult(error="cast failed: amount")
    d = _failed(job(T, JobState.FAILED, attempts=2, result=error))
    message = "stage transform failed after 2 attempts: cast failed: amount"
    assert d.actions == [
        RecordEvent("Warning", "StageFailed", f"Stage transform failed: {message}"),
        EmitRunEvent("FAIL"),
        RecordEvent("Warning", "StageFailed", message),
    ]
    entry = stage(d, T)
    assert (entry.phase, entry.reason, entry.message) == (Phase.FAILED, "StageFailed", message)
    assert cond(d.status) == {
        "type": "Succeeded",
        "status": "False",
        "reason": "StageFailed",
        "message": message,
        "observedGeneration": GEN,
        "lastTransitionTime": "2026-11-26T12:00:20Z",
    }
    assert d.status.completion_time == T2
    assert d.requeue_after is None


def test_a_failure_message_reads_well_with_one_attempt_or_no_detail() -> None:
    once = _failed(job(T, JobState.FAILED, failure_message="OOMKilled"))
    assert cond(once.status)["message"] == "stage transform failed after 1 attempt: OOMKilled"
    # A result without an error: the Job's own failure message.
    quiet = _failed(job(T, JobState.FAILED, failure_message="OOMKilled", result=StageResult()))
    assert cond(quiet.status)["message"] == "stage transform failed after 1 attempt: OOMKilled"
    bare = _failed(job(T, JobState.FAILED, attempts=2))
    assert cond(bare.status)["message"] == "stage transform failed after 2 attempts"
    assert bare.actions[0] == RecordEvent(
        "Warning", "StageFailed", "Stage transform failed: stage transform failed after 2 attempts"
    )


def test_cancel_mid_run_stops_the_stage_and_tells_once() -> None:
    run, _ = step(accepted(ttlSecondsAfterFinished=60), {}, T0)
    run, _ = step(run, {E: job(E, JobState.COMPLETE), T: job(T, JobState.ACTIVE)}, T0)
    jobs = {E: job(E, JobState.COMPLETE), T: job(T, JobState.ACTIVE)}
    cancelling, d = step(with_spec(run, cancel=True), jobs, T1)
    assert d.actions == [
        RecordEvent("Normal", "StageCancelled", "Stage transform cancelled"),
        RecordEvent("Normal", "StageCancelled", "Stage load cancelled"),
        DeleteJob(T, "orders-transform"),
    ]
    assert cond(d.status)["status"] == "Unknown" and d.requeue_after == 0
    assert (d.status.completion_time, stage(d, T).completion_time) == (T1, T1)
    assert stage(d, L).completion_time is None, "load never ran"
    jobs[T] = job(T, JobState.ACTIVE, deleting=True)
    _, d = step(cancelling, jobs, T2)
    assert d.actions == [
        EmitRunEvent("ABORT"),
        RecordEvent("Warning", "Cancelled", "Run cancelled by spec.cancel"),
    ]
    assert stage(d, T).completion_time == T1
    assert d.status.completion_time == T1, "the cancel's recorded time"
    assert stage(d, E).phase == Phase.SUCCEEDED
    assert d.status.progress == "1/3"
    assert cond(d.status) == {
        "type": "Succeeded",
        "status": "False",
        "reason": "Cancelled",
        "message": "Run cancelled by spec.cancel",
        "observedGeneration": GEN,
        "lastTransitionTime": "2026-11-26T12:00:20Z",
    }
    # The TTL counts from the pass that decided the end (T2), not the recorded cancel:
    # an operator away longer than the TTL between the two passes must still write the
    # run Cancelled before deleting it (decide.ended_at).
    assert d.requeue_after == 60, "the TTL counts from the pass that decided the end"


def test_suspend_says_where_it_holds() -> None:
    run, _ = step(accepted(), {}, T0)
    _, d = step(with_spec(run, suspend=True), {E: job(E, JobState.COMPLETE)}, T2)
    assert d.actions == [
        RecordEvent("Normal", "StageSucceeded", "Stage extract succeeded"),
        RecordEvent("Normal", "Suspended", "Run suspended before stage transform"),
    ]
    assert d.status.current_stage == T
    assert (cond(d.status)["message"], cond(d.status)["observedGeneration"]) == (
        "Suspended before stage transform",
        GEN,
    )


def test_the_ttl_is_due_at_its_exact_second() -> None:
    run, _ = step(accepted(ttlSecondsAfterFinished=60), {}, T0)
    jobs = {s: job(s, JobState.COMPLETE) for s in (E, T, L)}
    done, _ = step(run, jobs, T0)
    _, due = step(done, jobs, T0 + timedelta(seconds=60))
    assert due.actions == [DeleteRun()]
    assert due.requeue_after is None


def test_a_status_missing_stages_gets_them_in_order() -> None:
    run = accepted()
    assert run.status is not None
    partial = run.status.model_copy(update={"stages": [StageStatus(name=L), StageStatus(name=T)]})
    _, d = step(run.model_copy(update={"status": partial}), {}, T1)
    assert [(s.name, s.phase) for s in d.status.stages] == [
        (E, Phase.RUNNING),
        (T, Phase.PENDING),
        (L, Phase.PENDING),
    ]


def test_refusing_a_run_before_it_started_records_nothing_to_wait_for() -> None:
    run = accepted(ttlSecondsAfterFinished=30)
    before = run.model_dump()
    d = refuse(run, "image evil:latest is not allowed", T2)
    assert run.model_dump() == before, "the run read is not changed in place"
    assert d.actions == [
        RecordEvent("Warning", "PolicyViolation", "image evil:latest is not allowed")
    ]
    assert d.status.progress == "0/3"
    assert d.requeue_after == 30
    assert cond(d.status)["observedGeneration"] == GEN
    assert cond(d.status)["lastTransitionTime"] == "2026-11-26T12:00:20Z"
    for kind in (CONDITION_LINEAGE_RECORDED, CONDITION_TRACE_RECORDED):
        assert cond(d.status, kind) == {
            "type": kind,
            "status": "False",
            "reason": "PolicyViolation",
            "message": "The run was refused before any stage ran: it has no lineage "
            "or trace to record",
            "observedGeneration": GEN,
            "lastTransitionTime": "2026-11-26T12:00:20Z",
        }


def test_a_timed_out_stage_says_so_in_its_event() -> None:
    d = _failed(job(T, JobState.FAILED, failure_reason="DeadlineExceeded"))
    message = "stage transform exceeded its timeout"
    assert d.actions == [
        RecordEvent("Warning", "StageTimeout", f"Stage transform failed: {message}"),
        EmitRunEvent("FAIL"),
        RecordEvent("Warning", "StageTimeout", message),
    ]


def test_a_queued_run_says_why_once_with_a_normal_event() -> None:
    why = "Queued: 2 of 2 runs active"
    d = decide(accepted(), {}, T1, IDS, queued=why)
    assert d.actions == [RecordEvent("Normal", "Queued", why)]
    assert cond(d.status) == {
        "type": "Succeeded",
        "status": "Unknown",
        "reason": "Queued",
        "message": why,
        "observedGeneration": GEN,
        "lastTransitionTime": "2026-11-26T12:00:00Z",
    }


def test_a_failure_detail_ending_in_a_capital_x_is_kept_whole() -> None:
    """Only the separator left by an empty detail is trimmed, never the detail's own end
    (a column or a host named X)."""
    run, _ = step(accepted(), {})
    failed = job(E, JobState.FAILED, failure_message="no such column X")
    _, d = step(run, {E: failed}, T1)
    message = "stage extract failed after 1 attempt: no such column X"
    assert cond(d.status)["message"] == message
    assert d.actions == [
        RecordEvent("Warning", "StageFailed", f"Stage extract failed: {message}"),
        EmitRunEvent("FAIL"),
        RecordEvent("Warning", "StageFailed", message),
    ]
