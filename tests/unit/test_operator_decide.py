"""Table-driven tests of the operator's pure reconcile rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lineagehub_operator.decide import (
    CreateJob,
    Decision,
    DeleteJob,
    DeleteRun,
    EmitRunEvent,
    RecordEvent,
    RunIds,
    decide,
)
from lineagehub_operator.observed import JobState, ObservedJob, StageResult

from lineagehub.api.pipelinerun import (
    CONDITION_SUCCEEDED,
    ConditionStatus,
    Phase,
    PipelineRun,
    Reason,
    StageName,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)
E, T, L = StageName.EXTRACT, StageName.TRANSFORM, StageName.LOAD


def make_run(**spec: Any) -> PipelineRun:
    body = {
        "metadata": {"name": "orders", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {
            "source": {"uri": "file:///data/in.csv", "format": "csv"},
            "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
            **spec,
        },
    }
    return PipelineRun.model_validate(body)


def started(run: PipelineRun) -> PipelineRun:
    """The run after its first reconcile (ids persisted)."""
    return run.model_copy(update={"status": decide(run, {}, T0, IDS).status})


def job(stage: StageName, state: JobState, attempts: int = 1, **kw: Any) -> ObservedJob:
    return ObservedJob(
        stage=stage,
        name=f"orders-{stage}",
        uid=f"j-{stage}",
        state=state,
        attempts=attempts,
        start_time=T0,
        **kw,
    )


def step(
    run: PipelineRun, jobs: dict[StageName, ObservedJob], at: datetime = T0
) -> tuple[PipelineRun, Decision]:
    decision = decide(run, jobs, at, IDS)
    return run.model_copy(update={"status": decision.status}), decision


def succeeded(d: Decision) -> tuple[str, str]:
    cond = d.status.condition(CONDITION_SUCCEEDED)
    assert cond is not None
    return cond.status.value, cond.reason


def kinds(d: Decision) -> list[type]:
    return [type(a) for a in d.actions]


def test_first_sight_persists_ids_before_any_action() -> None:
    d = decide(make_run(), {}, T0, IDS)
    assert d.actions == [], "nothing is emitted or created before the ids are stored"
    assert d.requeue_after == 0
    assert d.status.run_id == IDS.run_id
    assert d.status.traceparent == f"00-{IDS.trace_id}-{IDS.span_id}-01"
    assert d.status.phase == Phase.PENDING
    assert succeeded(d) == ("Unknown", "Started")
    assert [s.name for s in d.status.stages] == [E, T, L]
    assert d.status.progress == "0/3"


def test_ids_are_never_regenerated() -> None:
    run = started(make_run())
    other = RunIds(
        run_id="019ac0f0-0000-7000-8000-00000000ffff", trace_id="1" * 32, span_id="2" * 16
    )
    d = decide(run, {}, T0, other)
    assert d.status.run_id == IDS.run_id
    assert d.status.trace_id == IDS.trace_id


def test_first_stage_created_with_start_event() -> None:
    _, d = step(started(make_run()), {})
    assert CreateJob(E) in d.actions
    assert EmitRunEvent("START") in d.actions
    assert d.status.phase == Phase.RUNNING
    assert d.status.current_stage == E
    assert d.status.stage(E).job_name == "orders-extract"  # type: ignore[union-attr]
    assert succeeded(d) == ("Unknown", "Running")
    assert any(isinstance(a, RecordEvent) and a.reason == "StageStarted" for a in d.actions)


def test_reconcile_is_idempotent_while_a_stage_runs() -> None:
    run, _ = step(started(make_run()), {})
    jobs = {E: job(E, JobState.ACTIVE)}
    run, d1 = step(run, jobs)
    _, d2 = step(run, jobs)
    assert not any(isinstance(a, CreateJob) for a in d1.actions + d2.actions), "no duplicate Job"
    assert d2.actions == []
    assert d2.status == run.status


@pytest.mark.parametrize(
    ("done", "next_stage", "progress"),
    [({E}, T, "1/3"), ({E, T}, L, "2/3")],
)
def test_next_stage_starts_only_after_previous_complete(
    done: set[StageName], next_stage: StageName, progress: str
) -> None:
    run, _ = step(started(make_run()), {})
    jobs = {
        s: job(s, JobState.COMPLETE, result=StageResult(records_in=10, records_out=9)) for s in done
    }
    _, d = step(run, jobs)
    assert [a for a in d.actions if isinstance(a, CreateJob)] == [CreateJob(next_stage)]
    assert d.status.progress == progress
    assert d.status.current_stage == next_stage
    for s in done:
        entry = d.status.stage(s)
        assert entry is not None
        assert entry.phase == Phase.SUCCEEDED
        assert entry.records_out == 9


def test_success_after_three_stages() -> None:
    run, _ = step(started(make_run()), {})
    jobs = {
        s: job(s, JobState.COMPLETE, result=StageResult(records_in=5, records_out=4))
        for s in (E, T, L)
    }
    run, d = step(run, jobs, T0 + timedelta(seconds=30))
    assert d.status.phase == Phase.SUCCEEDED
    assert succeeded(d) == ("True", "Succeeded")
    assert d.status.progress == "3/3"
    assert d.status.completion_time == T0 + timedelta(seconds=30)
    assert d.status.current_stage is None
    assert EmitRunEvent("COMPLETE") in d.actions
    assert d.terminal
    _, again = step(run, jobs)
    assert again.actions == [], "a finished run emits nothing more"


@pytest.mark.parametrize(
    ("observed", "reason", "message_part"),
    [
        (
            job(
                T,
                JobState.FAILED,
                attempts=2,
                failure_reason="BackoffLimitExceeded",
                result=StageResult(error="cast failed: amount"),
            ),
            Reason.STAGE_FAILED,
            "cast failed: amount",
        ),
        (
            job(T, JobState.FAILED, failure_reason="DeadlineExceeded"),
            Reason.STAGE_TIMEOUT,
            "exceeded its timeout",
        ),
        (
            job(
                T,
                JobState.FAILED,
                failure_reason="BackoffLimitExceeded",
                pod_reason="DeadlineExceeded",
            ),
            Reason.STAGE_TIMEOUT,
            "timeout",
        ),
        (
            job(
                T,
                JobState.FAILED,
                result=StageResult(
                    error="range check on amount failed for 3 rows", quality_failed=True
                ),
            ),
            Reason.QUALITY_CHECK_FAILED,
            "3 rows",
        ),
    ],
)
def test_failed_stage_fails_the_run_with_reason(
    observed: ObservedJob, reason: Reason, message_part: str
) -> None:
    run, _ = step(started(make_run()), {})
    _, d = step(run, {E: job(E, JobState.COMPLETE), T: observed})
    assert d.status.phase == Phase.FAILED
    status, why = succeeded(d)
    assert (status, why) == ("False", reason.value)
    cond = d.status.condition()
    assert cond is not None and message_part in cond.message
    entry = d.status.stage(T)
    assert entry is not None and entry.phase == Phase.FAILED and entry.reason == reason
    assert EmitRunEvent("FAIL") in d.actions
    assert not any(isinstance(a, CreateJob) for a in d.actions), "load never starts"
    assert any(isinstance(a, RecordEvent) and a.type == "Warning" for a in d.actions)


def test_retrying_stage_reports_attempt() -> None:
    run, _ = step(started(make_run()), {})
    _, d = step(run, {E: job(E, JobState.ACTIVE, attempts=2)})
    assert succeeded(d) == ("Unknown", "Retrying")
    assert d.status.stage(E).attempts == 2  # type: ignore[union-attr]


def test_cancel_deletes_running_job_and_ends_cancelled() -> None:
    """First the Job is deleted and the cancel's time recorded (no ABORT yet), then the
    run ends Cancelled at that time with its ABORT."""
    run, _ = step(started(make_run()), {})
    run = run.model_copy(update={"spec": run.spec.model_copy(update={"cancel": True})})
    cancelling, d = step(run, {E: job(E, JobState.ACTIVE)})
    assert DeleteJob(E, "orders-extract") in d.actions
    assert d.status.phase == Phase.RUNNING and d.requeue_after == 0
    assert succeeded(d) == ("Unknown", "Cancelled")
    assert d.status.completion_time_precise == T0
    assert not any(isinstance(a, EmitRunEvent) for a in d.actions), "ABORT once it is recorded"
    _, d = step(cancelling, {E: job(E, JobState.ACTIVE, deleting=True)}, T0 + timedelta(seconds=9))
    assert not any(isinstance(a, DeleteJob) for a in d.actions), "deleted once"
    assert d.status.phase == Phase.CANCELLED
    assert succeeded(d) == ("False", "Cancelled")
    assert d.status.completion_time_precise == T0, "the recorded time, not this pass's"
    assert d.status.stage(E).phase == Phase.CANCELLED  # type: ignore[union-attr]
    assert d.status.stage(E).completion_time == T0  # type: ignore[union-attr]
    assert d.status.stage(L).phase == Phase.CANCELLED  # type: ignore[union-attr]
    assert EmitRunEvent("ABORT") in d.actions


def test_a_recorded_cancel_ends_the_run_even_if_taken_back() -> None:
    run, _ = step(started(make_run()), {})
    run = run.model_copy(update={"spec": run.spec.model_copy(update={"cancel": True})})
    cancelling, _ = step(run, {E: job(E, JobState.ACTIVE)})
    back = cancelling.model_copy(
        update={"spec": cancelling.spec.model_copy(update={"cancel": False})}
    )
    _, d = step(back, {}, T0 + timedelta(seconds=3))
    assert not any(isinstance(a, CreateJob) for a in d.actions), "its stage is not started again"
    assert d.status.phase == Phase.CANCELLED and EmitRunEvent("ABORT") in d.actions


def test_cancel_before_start_creates_nothing() -> None:
    run = started(make_run(cancel=True))
    cancelling, d = step(run, {})
    assert not any(isinstance(a, CreateJob) for a in d.actions)
    _, d = step(cancelling, {})
    assert not any(isinstance(a, CreateJob) for a in d.actions)
    assert d.status.phase == Phase.CANCELLED


def test_suspend_holds_the_next_stage_and_resume_continues() -> None:
    run, _ = step(started(make_run()), {})
    run = run.model_copy(update={"spec": run.spec.model_copy(update={"suspend": True})})
    held, d = step(run, {E: job(E, JobState.COMPLETE)})
    assert not any(isinstance(a, CreateJob) for a in d.actions)
    assert succeeded(d) == ("Unknown", "Suspended")
    assert any(isinstance(a, RecordEvent) and a.reason == "Suspended" for a in d.actions)
    _, again = step(held, {E: job(E, JobState.COMPLETE)})
    assert again.actions == [], "the Suspended event is sent once"
    resumed = held.model_copy(update={"spec": held.spec.model_copy(update={"suspend": False})})
    _, d = step(resumed, {E: job(E, JobState.COMPLETE)})
    assert CreateJob(T) in d.actions


def test_ttl_deletes_finished_run_when_due() -> None:
    run, _ = step(started(make_run(ttlSecondsAfterFinished=60)), {})
    jobs = {s: job(s, JobState.COMPLETE) for s in (E, T, L)}
    done, d = step(run, jobs, T0)
    assert d.requeue_after == 60
    _, early = step(done, jobs, T0 + timedelta(seconds=30))
    assert DeleteRun() not in early.actions
    assert early.requeue_after == 30
    _, due = step(done, jobs, T0 + timedelta(seconds=61))
    assert due.actions == [DeleteRun()]


def test_condition_transition_time_moves_only_on_status_change() -> None:
    run, d1 = step(started(make_run()), {}, T0)
    run, d2 = step(run, {E: job(E, JobState.ACTIVE)}, T0 + timedelta(seconds=5))
    c1, c2 = d1.status.condition(), d2.status.condition()
    assert c1 is not None and c2 is not None
    assert c1.last_transition_time == c2.last_transition_time, "Unknown -> Unknown keeps the time"
    assert c2.status == ConditionStatus.UNKNOWN


def test_quality_verdicts_are_kept_with_their_samples() -> None:
    run, _ = step(started(make_run()), {})
    checks = (
        {"name": "amount_ok", "type": "range", "column": "amount", "severity": "warn",
         "success": False, "failedRows": 3, "sample": ["-1", "-5"]},
        {"type": "not_null", "column": "id", "severity": "fail", "success": True, "failedRows": 0},
        {"type": "future_check", "column": "id", "severity": "fail", "success": True},
    )  # fmt: skip
    result = StageResult(records_in=10, records_out=10, quality=checks)
    _, d = step(run, {E: job(E, JobState.COMPLETE), T: job(T, JobState.COMPLETE, result=result)})
    entry = d.status.stage(T)
    assert entry is not None and entry.quality is not None
    assert [(q.column, q.success, q.failed_rows) for q in entry.quality] == [
        ("amount", False, 3),
        ("id", True, 0),
    ]
    # The failing values stay (the console and describe show them), bounded in size.
    assert [q.sample for q in entry.quality] == [["-1", "-5"], []]
    wire = d.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["stages"][1]["quality"][0]["sample"] == ["-1", "-5"]


def test_a_long_sample_is_trimmed_not_dropped() -> None:
    from lineagehub.api.pipelinerun import QualityVerdict

    verdict = QualityVerdict.model_validate(
        {"type": "unique", "column": "id", "severity": "fail", "success": False,
         "sample": ["x" * 1000] * 50}
    )  # fmt: skip
    assert len(verdict.sample) == 5 and all(len(v) == 200 for v in verdict.sample)


def test_a_stage_whose_job_vanished_after_it_succeeded_is_not_run_again() -> None:
    """The Job of a finished stage may be deleted (TTL, a person, garbage collection):
    the status already holds its result, so the run goes on from there, never re-running
    the stage (which would re-read the source and emit its lineage twice)."""
    run, _ = step(started(make_run()), {})
    run, _ = step(run, {E: job(E, JobState.ACTIVE)})
    run, d = step(
        run, {E: job(E, JobState.COMPLETE, result=StageResult(records_in=5, records_out=5))}
    )
    assert [a.stage for a in d.actions if isinstance(a, CreateJob)] == [T]
    entry = d.status.stage(E)
    assert entry is not None and entry.phase == Phase.SUCCEEDED
    # The extract Job is gone; transform's is running.
    run, d = step(run, {T: job(T, JobState.ACTIVE)})
    assert not [a for a in d.actions if isinstance(a, CreateJob)]
    again = d.status.stage(E)
    assert again is not None and (again.phase, again.records_out) == (Phase.SUCCEEDED, 5)
    # Both earlier Jobs gone, load's done: the run succeeds with nothing re-created.
    run, d = step(
        run, {T: job(T, JobState.COMPLETE, result=StageResult(records_in=5, records_out=4))}
    )
    run, d = step(
        run, {L: job(L, JobState.COMPLETE, result=StageResult(records_in=4, records_out=4))}
    )
    assert not [a for a in d.actions if isinstance(a, CreateJob)]
    assert succeeded(d) == ("True", Reason.SUCCEEDED)
