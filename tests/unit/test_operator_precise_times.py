"""A run's and its stages' times to the millisecond beside the whole-second Kubernetes
ones: written as RFC 3339 with three fractional digits, read back to the same instant,
and set by the operator's rule from its own clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from lineagehub_operator.decide import RunIds, decide
from lineagehub_operator.observed import JobState, ObservedJob, StageResult

from lineagehub.api.pipelinerun import (
    PipelineRun,
    StageName,
    StageStatus,
    format_precise_time,
    format_time,
)
from tests.fuzz import fuzz_settings

IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)
E, T, L = StageName.EXTRACT, StageName.TRANSFORM, StageName.LOAD


def test_the_milliseconds_are_written_and_the_rest_truncated() -> None:
    at = datetime(2026, 12, 1, 4, 0, 5, 123_999, tzinfo=UTC)
    assert format_precise_time(at) == "2026-12-01T04:00:05.123Z"
    assert format_precise_time(at.replace(microsecond=0)) == "2026-12-01T04:00:05.000Z"
    assert format_precise_time(at.replace(microsecond=999)) == "2026-12-01T04:00:05.000Z"
    # Another offset is written in UTC; a naive time is taken as UTC, as format_time does.
    east = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert format_precise_time(east) == "2026-12-01T04:00:05.123Z"
    assert format_precise_time(at.replace(tzinfo=None)) == "2026-12-01T04:00:05.123Z"
    assert format_time(at) == "2026-12-01T04:00:05Z", "the Kubernetes-style field is unchanged"


@fuzz_settings(300)
@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    )
)
def test_a_written_time_reads_back_to_its_millisecond(at: datetime) -> None:
    stage = StageStatus(name=E, start_time=at, start_time_precise=at)
    wire = stage.model_dump(mode="json", by_alias=True, exclude_none=True)
    back = StageStatus.model_validate(wire)
    assert back.start_time_precise == at.replace(microsecond=at.microsecond // 1000 * 1000)
    assert back.start_time == at.replace(microsecond=0)
    # The precise time never falls in another second than the whole-second one.
    assert wire["startTimePrecise"][:19] == wire["startTime"][:19]


def test_a_time_from_another_writer_is_read_whatever_its_precision() -> None:
    for text, micros in (
        ("2026-12-01T04:00:05.5Z", 500_000),
        ("2026-12-01T04:00:05.123456Z", 123_456),
        ("2026-12-01T05:00:05.120+01:00", 120_000),
        ("2026-12-01T04:00:05Z", 0),
    ):
        stage = StageStatus.model_validate({"name": "load", "completionTimePrecise": text})
        assert stage.completion_time_precise == datetime(2026, 12, 1, 4, 0, 5, micros, UTC), text


def _run() -> PipelineRun:
    return PipelineRun.model_validate(
        {
            "metadata": {"name": "orders", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
            },
        }
    )


def _done(stage: StageName, finished: datetime | None = None) -> ObservedJob:
    """A Complete stage Job; `finished`: the end its pod wrote in its termination
    message (`finishedAt`), none from an older runner."""
    message = {"recordsIn": 1, "recordsOut": 1}
    if finished is not None:
        message["finishedAt"] = format_precise_time(finished)  # type: ignore[assignment]
    return ObservedJob(
        stage=stage,
        name=f"orders-{stage}",
        uid=f"j-{stage}",
        state=JobState.COMPLETE,
        attempts=1,
        # Kubernetes' own times have whole seconds.
        start_time=T0.replace(microsecond=0),
        completion_time=T0.replace(microsecond=0) + timedelta(seconds=1),
        result=StageResult.parse(json.dumps(message)),
    )


T0 = datetime(2026, 12, 1, 4, 0, 5, 20_000, tzinfo=UTC)


def test_each_stage_starts_on_the_operators_clock_and_ends_as_its_pod_said() -> None:
    """A stage starts when its Job is created (the operator's clock) and ends when its
    pod said it ended (its termination message), both to the millisecond; the run ends
    with its last stage, whenever the operator sees that."""
    run = _run()
    moments = [T0 + timedelta(milliseconds=ms) for ms in (0, 1, 21, 55, 62)]
    reported = {
        E: moments[2] - timedelta(milliseconds=3),
        T: moments[3] - timedelta(milliseconds=5),
    }
    reported[L] = moments[4] - timedelta(milliseconds=2, microseconds=400)
    jobs: dict[StageName, ObservedJob] = {}
    # accepted, extract created, extract seen done, transform seen done, load seen done
    for at, finished in zip(moments, (None, None, E, T, L), strict=True):
        if finished is not None:
            jobs[finished] = _done(finished, reported[finished])
        run = run.model_copy(update={"status": decide(run, jobs, at, IDS).status})
    status = run.status
    assert status is not None and status.phase == "Succeeded"
    assert status.start_time_precise == moments[0]
    load_end = datetime(2026, 12, 1, 4, 0, 5, 79_000, tzinfo=UTC)  # to the millisecond
    assert status.completion_time_precise == load_end, "the last stage's end"
    spans = {s.name: (s.start_time_precise, s.completion_time_precise) for s in status.stages}
    assert spans == {
        E: (moments[1], reported[E]),
        T: (moments[2], reported[T]),
        L: (moments[3], load_end),
    }
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    extract = next(s for s in wire["stages"] if s["name"] == "extract")
    assert extract["startTimePrecise"] == "2026-12-01T04:00:05.021Z"
    assert extract["completionTimePrecise"] == "2026-12-01T04:00:05.038Z"
    # The Kubernetes-style fields: the Job's whole-second start, the same end's second.
    assert extract["startTime"] == "2026-12-01T04:00:05Z"
    assert extract["completionTime"] == "2026-12-01T04:00:05Z"
    assert wire["completionTime"] == "2026-12-01T04:00:05Z"


def test_a_stage_whose_pod_did_not_say_when_it_ended_gets_the_jobs_end_and_no_precise_one() -> None:
    """No `finishedAt` (an older runner): the Job's whole-second end, no made-up
    milliseconds, for the stage and for the run it ends; nothing of the pass's clock."""
    run = _run()
    run = run.model_copy(update={"status": decide(run, {}, T0, IDS).status})
    jobs = {s: _done(s) for s in (E, T, L)}
    status = decide(run, jobs, T0 + timedelta(seconds=9, microseconds=4_321), IDS).status
    assert status.phase == "Succeeded"
    job_end = T0.replace(microsecond=0) + timedelta(seconds=1)
    assert [(s.completion_time, s.completion_time_precise) for s in status.stages] == [
        (job_end, None)
    ] * 3
    assert (status.completion_time, status.completion_time_precise) == (job_end, None)


def test_a_pod_clock_behind_the_operators_never_ends_a_stage_before_it_started() -> None:
    run = _run()
    for _ in ("accepted", "extract created"):
        run = run.model_copy(update={"status": decide(run, {}, T0, IDS).status})
    early = _done(E, T0 - timedelta(milliseconds=250))
    status = decide(run, {E: early}, T0 + timedelta(seconds=1), IDS).status
    extract = status.stage(E)
    assert extract is not None and extract.start_time_precise == T0
    assert extract.completion_time_precise == T0


def test_a_stage_whose_start_the_operator_did_not_see_gets_no_precise_start() -> None:
    """A stage found running with no start recorded (its status written by an older
    operator): the Job's whole-second start is kept, and no made-up milliseconds."""
    run = _run()
    run = run.model_copy(update={"status": decide(run, {}, T0, IDS).status})
    running = ObservedJob(
        stage=E,
        name="orders-extract",
        uid="j-extract",
        state=JobState.ACTIVE,
        attempts=1,
        start_time=T0.replace(microsecond=0),
    )
    status = decide(run, {E: running}, T0 + timedelta(seconds=2), IDS).status
    extract = status.stage(E)
    assert extract is not None
    assert extract.start_time == T0.replace(microsecond=0)
    assert extract.start_time_precise is None
