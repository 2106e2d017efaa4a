"""What the operator sends again is what it sent: a START re-sent after a restart or a
deleted Job, and a sharded stage's span published again, are the same bytes, so the
stores keep one event (one EventHash) and one span."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.decide import (
    CreateJob,
    Decision,
    DeleteRun,
    EmitRunEvent,
    RecordEvent,
    RunIds,
    accepted,
    decide,
    ended_at,
    refuse,
)
from lineagehub_operator.manifests import openlineage_names
from lineagehub_operator.observed import JobState, ObservedJob, StageResult
from lineagehub_operator.run_telemetry import SERVICE, end_span, run_event_payload
from lineagehub_operator.shards import newly_finished, stage_span

from lineagehub.api.pipelinerun import Phase, PipelineRun, PipelineRunStatus, StageName
from lineagehub.telemetry.spans import encode

IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)
E, T, L = StageName.EXTRACT, StageName.TRANSFORM, StageName.LOAD
CONFIG = OperatorConfig.from_env({})
#: A clock with microseconds, as `datetime.now` gives them.
T0 = datetime(2026, 12, 1, 4, 0, 0, 20_417, tzinfo=UTC)


def _run(**spec: object) -> PipelineRun:
    return PipelineRun.model_validate(
        {
            "metadata": {"name": "orders", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
                **spec,
            },
        }
    )


def _persisted(run: PipelineRun, status: PipelineRunStatus) -> PipelineRun:
    """The run as the API server gives it back after the status write (a restart reads
    this): the status through its JSON."""
    wire = json.loads(json.dumps(status.model_dump(mode="json", by_alias=True)))
    return run.model_copy(update={"status": PipelineRunStatus.model_validate(wire)})


def _first_pass(run: PipelineRun, now: datetime) -> Decision:
    """The daemon's first sight of a run: its ids and the decision, in one write."""
    return decide(run.model_copy(update={"status": accepted(run, IDS, now)}), {}, now, IDS)


def _start(run: PipelineRun, decision: Decision, now: datetime) -> bytes:
    """The START the daemon sends for `decision` (made from the run as it stages it)."""
    assert EmitRunEvent("START") in decision.actions
    staged = run.model_copy(update={"status": decision.status})
    namespace, job = openlineage_names(staged, CONFIG)
    return run_event_payload(staged, "START", namespace, job, now)


#: When the extract pod said it ended (its termination message's `finishedAt`).
EXTRACT_END = datetime(2026, 12, 1, 4, 0, 5, 731_000, tzinfo=UTC)


def _extract(shards: int = 1, done: bool = False) -> ObservedJob:
    """The extract Job as observed: running, or Complete at 04:00:06 (whole seconds),
    its pod having said it ended at 04:00:05.731."""
    message = json.dumps(
        {"recordsIn": 30, "recordsOut": 30, "finishedAt": "2026-12-01T04:00:05.731Z"}
    )
    return ObservedJob(
        stage=E,
        name="orders-extract",
        uid="j-1",
        state=JobState.COMPLETE if done else JobState.ACTIVE,
        attempts=1,
        start_time=T0.replace(microsecond=0),
        completion_time=datetime(2026, 12, 1, 4, 0, 6, tzinfo=UTC) if done else None,
        result=StageResult.parse(message) if done else None,
        shards=shards,
    )


def test_a_start_sent_again_after_a_restart_is_the_same_bytes() -> None:
    run = _run()
    first = _first_pass(run, T0)
    assert [type(a) for a in first.actions] == [RecordEvent, EmitRunEvent, CreateJob]
    assert first.actions[0] == RecordEvent(
        "Normal", "StageStarted", "Stage extract started (Job orders-extract)"
    )
    sent = _start(run, first, T0)
    # The operator restarts: the status it wrote is all it has; no Job is found.
    later = T0 + timedelta(seconds=30, microseconds=3_210)
    restarted = _persisted(run, first.status)
    again = decide(restarted, {}, later, IDS)
    assert CreateJob(E) in again.actions
    assert not [a for a in again.actions if isinstance(a, RecordEvent)], "no new StageStarted"
    assert _start(restarted, again, later) == sent
    event = json.loads(sent)
    assert event["eventTime"] == "2026-12-01T04:00:00.020000+00:00", "the run's start, in ms"
    assert event["run"]["runId"] == IDS.run_id


def test_a_start_sent_again_for_a_deleted_extract_job_is_the_same_bytes() -> None:
    run = _run()
    first = _first_pass(run, T0)
    sent = _start(run, first, T0)
    seen = decide(_persisted(run, first.status), {E: _extract()}, T0 + timedelta(seconds=2), IDS)
    assert not any(isinstance(a, EmitRunEvent) for a in seen.actions)
    # A user deletes the extract Job while it runs: the stage is started again.
    later = T0 + timedelta(seconds=40, microseconds=987_654)
    current = _persisted(run, seen.status)
    again = decide(current, {}, later, IDS)
    assert CreateJob(E) in again.actions
    assert _start(current, again, later) == sent


def test_a_stage_span_published_again_is_the_same_span() -> None:
    """The span is made from the status the pass writes before publishing it: read back
    (a restart's republish) or decided on again at another time, it is the same span."""
    run = _run(parallelism=3)
    running = _persisted(run, _first_pass(run, T0).status)
    seen_at = T0 + timedelta(seconds=8, microseconds=123_456)
    ended = decide(running, {E: _extract(3, done=True)}, seen_at, IDS)
    (stage,) = newly_finished(running.status, ended.status, run)
    staged = running.model_copy(update={"status": ended.status})
    published = stage_span(staged, stage, "orders")
    assert published is not None
    # From the Job's creation to the end its pod said, to the millisecond (not the Job's
    # 04:00:06, nor when this pass saw it).
    assert published.start == datetime(2026, 12, 1, 4, 0, 0, 20_000, tzinfo=UTC)
    assert published.end == EXTRACT_END
    first_bytes = encode([published], SERVICE)
    # Read back as written, and decided on again at two later times: the same bytes.
    written = _persisted(run, ended.status)
    assert written.status is not None
    for later in (seen_at + timedelta(seconds=5), seen_at + timedelta(seconds=9, microseconds=7)):
        again = decide(written, {E: _extract(3, done=True)}, later, IDS)
        same = again.status.stage(E)
        assert same is not None and same.phase == Phase.SUCCEEDED
        assert same == written.status.stage(E), "the recorded end is kept, not seen anew"
        restaged = written.model_copy(update={"status": again.status})
        republished = stage_span(restaged, same, "orders")
        assert republished is not None and encode([republished], SERVICE) == first_bytes


def _job(
    stage: StageName,
    state: JobState,
    *,
    message: dict[str, object] | None = None,
    pod_done: bool = False,
    completed: datetime | None = None,
) -> ObservedJob:
    """A stage's Job as observed; `message`: its pod's termination message."""
    return ObservedJob(
        stage=stage,
        name=f"orders-{stage.value}",
        uid=f"j-{stage.value}",
        state=state,
        attempts=1,
        start_time=T0.replace(microsecond=0),
        completion_time=completed,
        result=None if message is None else StageResult.parse(json.dumps(message)),
        pod_succeeded=pod_done,
    )


def _ended(stage: StageName, at: str, **fields: object) -> ObservedJob:
    """A Complete stage Job whose pod said it ended at `at` (04:00:MM.mmm)."""
    message = {"recordsIn": 30, "recordsOut": 30, "finishedAt": f"2026-12-01T04:{at}Z", **fields}
    return _job(stage, JobState.COMPLETE, message=message, completed=_whole(at) + timedelta(1))


def _whole(at: str) -> datetime:
    minute, second = at.split(":")
    return datetime(2026, 12, 1, 4, int(minute), int(float(second)), tzinfo=UTC)


def _end_bytes(run: PipelineRun, decision: Decision, now: datetime) -> tuple[bytes, bytes]:
    """The end event and root span the daemon sends for `decision`, as Kafka gets them."""
    (sent,) = [a for a in decision.actions if isinstance(a, EmitRunEvent)]
    staged = run.model_copy(update={"status": decision.status})
    namespace, job = openlineage_names(staged, CONFIG)
    span = end_span(staged, sent.event_type, job, now)
    assert span is not None
    return (
        run_event_payload(staged, sent.event_type, namespace, job, now),
        encode([span], SERVICE),
    )


def _until_load(run: PipelineRun) -> PipelineRun:
    """The run as persisted once extract and transform have ended and load runs."""
    current = _persisted(run, _first_pass(run, T0).status)
    extract_done = {E: _ended(E, "00:05.731")}
    current = _persisted(run, decide(current, extract_done, T0 + timedelta(seconds=6), IDS).status)
    both_done = {**extract_done, T: _ended(T, "00:11.402")}
    current = _persisted(run, decide(current, both_done, T0 + timedelta(seconds=12), IDS).status)
    assert current.status is not None and current.status.current_stage == L
    return current


def test_a_complete_sent_again_after_its_write_was_lost_is_the_same_bytes() -> None:
    """The load pod has succeeded (its Job not Complete yet): the pass sends COMPLETE and
    the root span, then its status write is lost. The operator restarts 40 s later and
    finds the Job Complete: it sends them again, the same bytes, ending when load did."""
    run = _run()
    before = _until_load(run)
    load_said = {"recordsIn": 30, "recordsOut": 30, "finishedAt": "2026-12-01T04:00:19.064Z"}
    pod_done = _job(L, JobState.ACTIVE, message=load_said, pod_done=True, completed=_whole("00:19"))
    jobs = {E: _ended(E, "00:05.731"), T: _ended(T, "00:11.402"), L: pod_done}
    seen = T0 + timedelta(seconds=19, microseconds=503_117)
    first = decide(before, jobs, seen, IDS)
    assert first.status.phase == Phase.SUCCEEDED
    sent = _end_bytes(before, first, seen)
    event = json.loads(sent[0])
    assert (event["eventType"], event["eventTime"]) == (
        "COMPLETE",
        "2026-12-01T04:00:19.064000+00:00",
    )
    # Lost: the restarted operator has the status before that write, and the Job Complete.
    jobs[L] = replace(
        pod_done, state=JobState.COMPLETE, pod_succeeded=False, completion_time=_whole("00:21")
    )
    later = seen + timedelta(seconds=40, microseconds=1_234)
    again = decide(before, jobs, later, IDS)
    assert _end_bytes(before, again, later) == sent
    # What it writes this time holds that end: a pass after it sends nothing more.
    assert again.status.completion_time_precise == datetime(2026, 12, 1, 4, 0, 19, 64_000, UTC)
    assert again.status.stage(L) == first.status.stage(L)


def test_a_cancel_after_a_lost_ending_write_sends_the_same_end_not_abort() -> None:
    """COMPLETE and the root span were sent, the write that ended the run was lost, and
    a user cancels before the operator comes back: the Jobs have ended the run, so the
    next pass sends the same COMPLETE again and no ABORT after it (the old decide sent
    ABORT, and the stores had a run both completed and aborted)."""
    run = _run()
    before = _until_load(run)
    jobs = {E: _ended(E, "00:05.731"), T: _ended(T, "00:11.402"), L: _ended(L, "00:19.064")}
    seen = T0 + timedelta(seconds=20, microseconds=77_001)
    first = decide(before, jobs, seen, IDS)
    sent = _end_bytes(before, first, seen)
    cancelled = before.model_copy(update={"spec": _run(cancel=True).spec})
    for later in (seen + timedelta(seconds=9), seen + timedelta(minutes=4)):
        again = decide(cancelled, jobs, later, IDS)
        assert again.status.phase == Phase.SUCCEEDED
        assert [a for a in again.actions if isinstance(a, EmitRunEvent)] == [
            EmitRunEvent("COMPLETE")
        ]
        assert _end_bytes(cancelled, again, later) == sent
        assert (
            RecordEvent(
                "Normal",
                "CancelTooLate",
                "spec.cancel came after the run's stages had ended: the run Succeeded",
            )
            in again.actions
        )
    # Still running (load's Job active): the cancel stops it, as before.
    running = {**jobs, L: _job(L, JobState.ACTIVE)}
    stopping = decide(cancelled, running, seen, IDS)
    assert stopping.status.condition() is not None
    assert stopping.status.completion_time is not None and stopping.status.phase == Phase.RUNNING
    assert not any(isinstance(a, EmitRunEvent) for a in stopping.actions)


def test_a_fail_sent_again_after_its_write_was_lost_is_the_same_bytes() -> None:
    run = _run()
    current = _persisted(run, _first_pass(run, T0).status)
    error = {"error": "cast failed: amount", "errorKind": "StageError"}
    failed = _job(
        E,
        JobState.FAILED,
        message={**error, "finishedAt": "2026-12-01T04:00:03.287Z"},
        completed=_whole("00:04"),
    )
    sends = []
    for at in (T0 + timedelta(seconds=4, microseconds=90_001), T0 + timedelta(minutes=3)):
        decision = decide(current, {E: failed}, at, IDS)
        assert decision.status.phase == Phase.FAILED
        sends.append(_end_bytes(current, decision, at))
    assert sends[0] == sends[1]
    assert json.loads(sends[0][0])["eventTime"] == "2026-12-01T04:00:03.287000+00:00"


def test_an_abort_sent_again_after_its_write_was_lost_is_the_same_bytes() -> None:
    """The cancel's time is written before ABORT is sent: the pass sending it again
    (its write lost) sends it at that time, not its own."""
    run = _run(cancel=True)
    running = _persisted(_run(), _first_pass(_run(), T0).status)
    cancelled = running.model_copy(update={"spec": run.spec})
    at = T0 + timedelta(seconds=2, microseconds=345_678)
    recording = decide(cancelled, {E: _extract()}, at, IDS)
    assert not any(isinstance(a, EmitRunEvent) for a in recording.actions)
    recorded = _persisted(cancelled, recording.status)
    sends = []
    for later in (at + timedelta(microseconds=40_000), at + timedelta(seconds=50)):
        ending = decide(recorded, {}, later, IDS)
        assert ending.status.phase == Phase.CANCELLED
        sends.append(_end_bytes(recorded, ending, later))
    assert sends[0] == sends[1]
    assert json.loads(sends[0][0])["eventTime"] == "2026-12-01T04:00:02.366000+00:00"


def test_a_fail_for_a_run_refused_between_stages_is_the_same_bytes_when_refused_again() -> None:
    """The policy refuses the transform stage the pass would start (a host resolved
    anew): the run fails at extract's end as its pod said, which the refusal records,
    so a pass refusing it again (the write lost) sends the same FAIL."""
    run = _run()
    running = _persisted(run, _first_pass(run, T0).status)
    sends = []
    for at in (T0 + timedelta(seconds=6, microseconds=2_002), T0 + timedelta(seconds=70)):
        planned = decide(running, {E: _ended(E, "00:05.731")}, at, IDS)
        assert CreateJob(T) in planned.actions
        decision = refuse(running, "Refused by the operator's policy: spec.sink.uri", at, planned)
        assert not any(isinstance(a, CreateJob) for a in decision.actions)
        stages = {s.name: s.phase for s in decision.status.stages}
        assert stages == {E: Phase.SUCCEEDED, T: Phase.PENDING, L: Phase.PENDING}
        assert RecordEvent(
            "Normal", "StageSucceeded", "Stage extract succeeded, 30 records out"
        ) in (decision.actions)
        sends.append(_end_bytes(running, decision, at))
    assert sends[0] == sends[1]
    assert json.loads(sends[0][0])["eventTime"] == "2026-12-01T04:00:05.731000+00:00"


def test_a_run_ended_by_an_operator_back_late_counts_its_ttl_and_deadline_from_then() -> None:
    """The run's end is its load pod's end, but an operator away for ten minutes decides
    it only then: a TTL of a minute must not delete the run in the pass that ends it
    (its terminal status and last span would never be written), and the stores' deadline
    counts from that pass, not from the pod's end."""
    run = _run(ttlSecondsAfterFinished=60)
    before = _until_load(run)
    jobs = {E: _ended(E, "00:05.731"), T: _ended(T, "00:11.402"), L: _ended(L, "00:19.064")}
    back = T0 + timedelta(minutes=10)
    decision = decide(before, jobs, back, IDS)
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.status.completion_time_precise == datetime(2026, 12, 1, 4, 0, 19, 64_000, UTC)
    assert not any(isinstance(a, DeleteRun) for a in decision.actions)
    assert ended_at(decision.status) == back
    assert decision.requeue_after == 60
    # A pass after the TTL, counted from the decision, deletes it.
    ended = _persisted(run, decision.status)
    expired = decide(ended, jobs, back + timedelta(seconds=61), IDS)
    assert any(isinstance(a, DeleteRun) for a in expired.actions)
