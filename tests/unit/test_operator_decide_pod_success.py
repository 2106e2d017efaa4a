"""A single-pod stage moves its run on when its pod has succeeded, before its Job is
Complete; what is read from the pod, and when the Job is still waited for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from lineagehub_operator.decide import CreateJob, DeleteJob, EmitRunEvent, RecordEvent
from lineagehub_operator.observed import JobState, ObservedJob, ResultCache, StageResult
from lineagehub_operator.pod_success import SucceededPod, succeeded_pod, with_pod_success

from lineagehub.api.pipelinerun import Phase, Reason
from tests.unit.test_operator_decide import (
    T0,
    E,
    L,
    T,
    job,
    make_run,
    started,
    step,
    succeeded,
)

RESULT = StageResult.parse('{"recordsIn": 5, "recordsOut": 4}')
FINISHED = T0 + timedelta(seconds=2)


def pod_done(stage: Any, result: StageResult | None = RESULT, **kw: Any) -> ObservedJob:
    """The stage's Job still active (not synced yet) and its pod already exited 0."""
    return job(
        stage, JobState.ACTIVE, pod_succeeded=True, result=result, completion_time=FINISHED, **kw
    )


def test_pod_succeeded_before_the_job_is_complete_starts_the_next_stage() -> None:
    run, _ = step(started(make_run()), {})
    run, d = step(run, {E: pod_done(E)})
    extract = d.status.stage(E)
    assert extract is not None
    assert extract.phase == Phase.SUCCEEDED
    assert (extract.records_in, extract.records_out) == (5, 4)
    assert extract.completion_time == FINISHED, "the pod's finish, not the decision time"
    assert CreateJob(T) in d.actions
    assert d.status.current_stage == T


def test_pod_succeeded_without_a_termination_message_waits_for_the_job() -> None:
    run, _ = step(started(make_run()), {})
    _, d = step(run, {E: pod_done(E, result=None)})
    assert d.status.stage(E).phase == Phase.RUNNING  # type: ignore[union-attr]
    assert not any(isinstance(a, CreateJob) for a in d.actions)


def test_pod_succeeded_with_an_unparseable_message_waits_for_the_job() -> None:
    run, _ = step(started(make_run()), {})
    garbled = StageResult.parse("Traceback ...\nnot json")
    _, d = step(run, {E: pod_done(E, result=garbled)})
    assert d.status.stage(E).phase == Phase.RUNNING  # type: ignore[union-attr]
    assert not any(isinstance(a, CreateJob) for a in d.actions)


def test_a_sharded_stage_waits_for_its_job_even_when_a_pod_succeeded() -> None:
    run, _ = step(started(make_run()), {})
    _, d = step(run, {E: pod_done(E, shards=3)})
    assert d.status.stage(E).phase == Phase.RUNNING  # type: ignore[union-attr]
    assert not any(isinstance(a, CreateJob) for a in d.actions)


def test_a_failed_job_fails_the_run_as_before() -> None:
    run, _ = step(started(make_run()), {})
    failed = job(E, JobState.FAILED, result=StageResult.parse('{"error": "boom"}'))
    _, d = step(run, {E: failed})
    assert succeeded(d) == ("False", Reason.STAGE_FAILED)
    assert d.status.phase == Phase.FAILED


def test_the_job_completing_later_changes_nothing_and_emits_nothing() -> None:
    run, _ = step(started(make_run()), {})
    run, first = step(run, {E: pod_done(E)})
    complete = job(E, JobState.COMPLETE, result=RESULT, completion_time=FINISHED + timedelta(1))
    _, d = step(run, {E: complete, T: job(T, JobState.ACTIVE)})
    assert d.status.stage(E) == first.status.stage(E), "the stage was decided once"
    assert not any(isinstance(a, RecordEvent) and a.reason == "StageSucceeded" for a in d.actions)


def test_a_job_the_controller_fails_after_its_pod_succeeded_does_not_fail_the_run() -> None:
    """A deadline passing between the pod's success and the Job controller's sync."""
    run, _ = step(started(make_run()), {})
    run, _ = step(run, {E: pod_done(E)})
    late = job(E, JobState.FAILED, failure_reason="DeadlineExceeded", result=RESULT)
    _, d = step(run, {E: late, T: job(T, JobState.ACTIVE)})
    assert d.status.stage(E).phase == Phase.SUCCEEDED  # type: ignore[union-attr]
    assert d.status.phase == Phase.RUNNING


def test_the_decision_is_the_same_after_a_restart() -> None:
    """A restarted operator sees the same index (pod succeeded, Job active): the status
    it wrote before is reproduced, and no second Job is asked for."""
    run, _ = step(started(make_run()), {})
    run, first = step(run, {E: pod_done(E)})
    _, d = step(run, {E: pod_done(E), T: job(T, JobState.ACTIVE)}, T0 + timedelta(seconds=9))
    assert d.status.stage(E) == first.status.stage(E)
    assert not any(isinstance(a, CreateJob) for a in d.actions)


def test_the_last_pod_succeeding_ends_the_run() -> None:
    run, _ = step(started(make_run()), {})
    run, _ = step(run, {E: pod_done(E)})
    run, _ = step(run, {E: pod_done(E), T: pod_done(T)})
    _, d = step(run, {E: pod_done(E), T: pod_done(T), L: pod_done(L)})
    assert d.status.phase == Phase.SUCCEEDED
    assert EmitRunEvent("COMPLETE") in d.actions


def test_cancel_keeps_a_stage_whose_pod_succeeded_and_cancels_the_running_one() -> None:
    run, _ = step(started(make_run()), {})
    run, _ = step(run, {E: pod_done(E)})
    cancelled = run.model_copy(update={"spec": run.spec.model_copy(update={"cancel": True})})
    _, d = step(cancelled, {E: pod_done(E), T: job(T, JobState.ACTIVE)})
    assert d.status.stage(E).phase == Phase.SUCCEEDED  # type: ignore[union-attr]
    assert d.status.stage(T).phase == Phase.CANCELLED  # type: ignore[union-attr]
    assert DeleteJob(T, "orders-transform") in d.actions
    assert DeleteJob(E, "orders-extract") not in d.actions


# --------------------------------------------------------------------------- the pod watch


def pod_body(phase: str, message: str | None = '{"recordsOut": 4}', **meta: Any) -> dict[str, Any]:
    terminated = {"exitCode": 0, "finishedAt": "2026-11-26T12:00:02Z"}
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {
            "name": "orders-extract-abcde",
            "ownerReferences": [{"kind": "Job", "uid": "j-extract", "controller": True}],
            **meta,
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "stage", "state": {"terminated": terminated}}],
        },
    }


def test_only_a_succeeded_pod_is_indexed_with_its_job_uid_message_and_finish() -> None:
    pod = succeeded_pod(pod_body("Succeeded"))
    assert pod == SucceededPod("j-extract", '{"recordsOut": 4}', FINISHED)
    assert succeeded_pod(pod_body("Failed")) is None
    assert succeeded_pod(pod_body("Running")) is None
    assert succeeded_pod(pod_body("Succeeded", ownerReferences=[])) is None


@pytest.mark.parametrize("state", [JobState.COMPLETE, JobState.FAILED])
def test_a_finished_job_is_not_read_from_the_pod_index(state: JobState) -> None:
    cache = ResultCache()
    finished = job(E, state)
    pod = succeeded_pod(pod_body("Succeeded"))
    assert with_pod_success(finished, pod, cache, "u-1") is finished
    assert len(cache) == 0


def test_the_pod_result_is_read_once_and_kept_for_the_complete_job() -> None:
    cache = ResultCache()
    active = job(E, JobState.ACTIVE)
    seen = with_pod_success(active, succeeded_pod(pod_body("Succeeded")), cache, "u-1")
    assert seen.pod_succeeded and seen.result is not None and seen.result.records_out == 4
    assert seen.completion_time == FINISHED
    # The Job's later Complete pass finds it cached: the pod is not read again.
    assert cache.get("u-1", "j-extract") == (seen.result, None)
    other = SucceededPod("j-extract", '{"recordsOut": 99}', FINISHED)
    assert with_pod_success(active, other, cache, "u-1").result == seen.result


def test_a_sharded_job_is_not_taken_from_one_pod() -> None:
    cache = ResultCache()
    sharded = job(E, JobState.ACTIVE, shards=2)
    pod = succeeded_pod(pod_body("Succeeded"))
    assert with_pod_success(sharded, pod, cache, "u-1") is sharded
    assert len(cache) == 0


def test_a_pod_without_a_termination_message_is_not_cached() -> None:
    cache = ResultCache()
    active = job(E, JobState.ACTIVE)
    assert (
        with_pod_success(active, SucceededPod("j-extract", None, FINISHED), cache, "u-1") is active
    )
    assert len(cache) == 0  # the Complete Job's pass reads the pod, not an empty entry
    seen = with_pod_success(active, succeeded_pod(pod_body("Succeeded")), cache, "u-1")
    assert seen.result is not None and seen.result.records_out == 4
