"""A run's and its stages' times to the millisecond beside the whole-second Kubernetes
ones: written as RFC 3339 with three fractional digits, read back to the same instant,
and set by the operator's rule from its own clock."""

from __future__ import annotations

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


def _done(stage: StageName) -> ObservedJob:
    return ObservedJob(
        stage=stage,
        name=f"orders-{stage}",
        uid=f"j-{stage}",
        state=JobState.COMPLETE,
        attempts=1,
        # Kubernetes' own times have whole seconds.
        start_time=T0.replace(microsecond=0),
        completion_time=T0.replace(microsecond=0) + timedelta(seconds=1),
        result=StageResult(records_in=1, records_out=1, raw={}),
    )


T0 = datetime(2026, 12, 1, 4, 0, 5, 20_000, tzinfo=UTC)


def test_the_operator_records_each_stage_on_its_own_clock() -> None:
    """A stage starts when its Job is created and ends when the operator sees it end,
    both to the millisecond; the next stage starts at that same instant."""
    run = _run()
    moments = [T0 + timedelta(milliseconds=ms) for ms in (0, 1, 21, 55, 62)]
    jobs: dict[StageName, ObservedJob] = {}
    # accepted, extract created, extract seen done, transform seen done, load seen done
    for at, finished in zip(moments, (None, None, E, T, L), strict=True):
        if finished is not None:
            jobs[finished] = _done(finished)
        run = run.model_copy(update={"status": decide(run, jobs, at, IDS).status})
    status = run.status
    assert status is not None and status.phase == "Succeeded"
    assert status.start_time_precise == moments[0]
    assert status.completion_time_precise == moments[4]
    spans = {s.name: (s.start_time_precise, s.completion_time_precise) for s in status.stages}
    assert spans == {
        E: (moments[1], moments[2]),
        T: (moments[2], moments[3]),
        L: (moments[3], moments[4]),
    }
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    extract = next(s for s in wire["stages"] if s["name"] == "extract")
    assert extract["startTimePrecise"] == "2026-12-01T04:00:05.021Z"
    assert extract["completionTimePrecise"] == "2026-12-01T04:00:05.041Z"
    # The Kubernetes-style fields keep what they held: the Job's whole-second times.
    assert extract["startTime"] == "2026-12-01T04:00:05Z"
    assert extract["completionTime"] == "2026-12-01T04:00:06Z"


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
