"""What the operator sends again is what it sent: a START re-sent after a restart or a
deleted Job, and a sharded stage's span published again, are the same bytes, so the
stores keep one event (one EventHash) and one span."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.decide import (
    CreateJob,
    Decision,
    EmitRunEvent,
    RecordEvent,
    RunIds,
    accepted,
    decide,
)
from lineagehub_operator.manifests import openlineage_names
from lineagehub_operator.observed import JobState, ObservedJob, StageResult
from lineagehub_operator.run_telemetry import SERVICE, run_event_payload
from lineagehub_operator.shards import newly_finished, stage_span

from lineagehub.api.pipelinerun import Phase, PipelineRun, PipelineRunStatus, StageName
from lineagehub.telemetry.spans import encode

IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)
E = StageName.EXTRACT
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


def _extract(shards: int = 1, done: bool = False) -> ObservedJob:
    """The extract Job as observed: running, or Complete at 04:00:06 (whole seconds)."""
    return ObservedJob(
        stage=E,
        name="orders-extract",
        uid="j-1",
        state=JobState.COMPLETE if done else JobState.ACTIVE,
        attempts=1,
        start_time=T0.replace(microsecond=0),
        completion_time=datetime(2026, 12, 1, 4, 0, 6, tzinfo=UTC) if done else None,
        result=StageResult(records_in=30, records_out=30, raw={}) if done else None,
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
    # From the Job's creation to the end seen, to the millisecond (not the Job's 04:00:06).
    assert published.start == datetime(2026, 12, 1, 4, 0, 0, 20_000, tzinfo=UTC)
    assert published.end == datetime(2026, 12, 1, 4, 0, 8, 143_000, tzinfo=UTC)
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
