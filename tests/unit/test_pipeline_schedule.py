"""A Pipeline's schedule with an injected clock: catch-up after an outage (one run, never
a burst), deadlines, Forbid/Replace/Allow, suspend, bad schedules, DST in a time zone,
and history limits deleting the oldest scheduled runs first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lineagehub_operator.pipelines import scheduled_run, scheduled_run_name, seen_run
from lineagehub_operator.schedule import (
    CONDITION_SCHEDULE_VALID,
    PipelinePlan,
    SeenRun,
    cron_times,
    plan,
    unsaid,
)

from lineagehub.api.pipeline import SCHEDULED_TIME_ANNOTATION, Pipeline
from lineagehub.api.pipelinerun import Phase


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


CREATED = at("2026-11-30T10:00:30Z")


def pipeline(status: dict[str, Any] | None = None, **spec: Any) -> Pipeline:
    return Pipeline.model_validate(
        {
            "metadata": {"name": "orders", "namespace": "ns", "uid": "p-1", "generation": 1},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
                **spec,
            },
            "status": status,
        }
    )


def run(name: str, phase: Phase | None, created: str, **kw: Any) -> SeenRun:
    return SeenRun(name=name, phase=phase, created=at(created), **kw)


def step(p: Pipeline, now: str, runs: list[SeenRun] | None = None) -> PipelinePlan:
    return plan(p, runs or [], at(now), CREATED)


def reasons(out: PipelinePlan) -> list[str]:
    return [e.reason for e in out.events]


def test_no_schedule_only_summarises_the_runs() -> None:
    runs = [
        run("a", Phase.SUCCEEDED, "2026-11-30T09:00:00Z"),
        run("b", Phase.RUNNING, "2026-11-30T09:30:00Z"),
        run("c", None, "2026-11-30T09:40:00Z"),
    ]
    out = step(pipeline(), "2026-11-30T10:00:00Z", runs)
    assert (out.create, out.requeue_after, out.status.next_schedule_time) == (None, None, None)
    assert out.status.last_run == "c" and out.status.last_run_phase is None
    assert out.status.active == ["c", "b"] and out.status.active_count == 2
    assert [r.name for r in out.status.recent_runs] == ["c", "b", "a"]


def test_every_minute_waits_for_its_first_time_then_runs_once() -> None:
    p = pipeline(schedule="* * * * *")
    early = step(p, "2026-11-30T10:00:59Z")
    assert early.create is None
    assert early.status.next_schedule_time == at("2026-11-30T10:01:00Z")
    assert early.requeue_after == 1.0
    due = step(p, "2026-11-30T10:01:05Z")
    assert due.create == at("2026-11-30T10:01:00Z")
    assert due.status.last_schedule_time == due.create
    assert due.status.next_schedule_time == at("2026-11-30T10:02:00Z")
    assert reasons(due) == []
    # Planned again on its own status (a restart, a wake-up): nothing more.
    restarted = pipeline(due.status.model_dump(by_alias=True), schedule="* * * * *")
    again = step(restarted, "2026-11-30T10:01:40Z")
    assert again.create is None


def test_an_outage_starts_one_run_for_the_latest_missed_time() -> None:
    p = pipeline({"lastScheduleTime": "2026-11-30T10:00:00Z"}, schedule="0 * * * *")
    out = step(p, "2026-11-30T13:00:20Z")
    assert out.create == at("2026-11-30T13:00:00Z")
    assert reasons(out) == ["MissedSchedule"]
    assert "2 earlier" in out.events[0].message


def test_too_many_missed_times_is_an_event_and_still_one_run() -> None:
    p = pipeline({"lastScheduleTime": "2026-11-28T10:00:00Z"}, schedule="* * * * *")
    out = step(p, "2026-11-30T10:07:42Z")
    assert out.create == at("2026-11-30T10:07:00Z")
    assert reasons(out) == ["TooManyMissedTimes"]
    assert "startingDeadlineSeconds" in out.events[0].message


@pytest.mark.parametrize(("deadline", "starts"), [(60, False), (300, True), (None, True)])
def test_starting_deadline(deadline: int | None, starts: bool) -> None:
    p = pipeline(
        {"lastScheduleTime": "2026-11-29T10:05:00Z"},
        schedule="5 10 * * *",
        startingDeadlineSeconds=deadline,
    )
    out = step(p, "2026-11-30T10:07:00Z")
    assert (out.create == at("2026-11-30T10:05:00Z")) is starts
    assert out.create is not None or out.status.last_schedule_time == at("2026-11-29T10:05:00Z")


ACTIVE = [run("orders-1", Phase.RUNNING, "2026-11-30T10:00:40Z", scheduled=CREATED)]


def test_forbid_skips_while_a_run_is_active_then_catches_up() -> None:
    p = pipeline(schedule="* * * * *", concurrencyPolicy="Forbid")
    held = step(p, "2026-11-30T10:01:02Z", ACTIVE)
    assert held.create is None and held.cancel == []
    assert held.status.last_schedule_time is None
    assert reasons(held) == ["RunAlreadyActive"]
    finished = [run("orders-1", Phase.SUCCEEDED, "2026-11-30T10:00:40Z", scheduled=CREATED)]
    later = step(p, "2026-11-30T10:01:30Z", finished)
    assert later.create == at("2026-11-30T10:01:00Z")


def test_replace_cancels_the_active_runs_and_starts() -> None:
    p = pipeline(schedule="* * * * *", concurrencyPolicy="Replace")
    out = step(p, "2026-11-30T10:01:02Z", ACTIVE)
    assert out.cancel == ["orders-1"]
    assert out.create == at("2026-11-30T10:01:00Z")


BY_HAND = [
    run("by-hand", Phase.RUNNING, "2026-11-30T10:00:30Z"),  # made by hand, or a re-run
]


@pytest.mark.parametrize("policy", ["Forbid", "Replace"])
def test_runs_the_schedule_did_not_make_are_neither_waited_on_nor_cancelled(
    policy: str,
) -> None:
    out = step(
        pipeline(schedule="* * * * *", concurrencyPolicy=policy), "2026-11-30T10:01:02Z", BY_HAND
    )
    assert out.cancel == [] and out.create == at("2026-11-30T10:01:00Z")
    assert out.status.active == ["by-hand"]  # still shown as active
    # With a scheduled run active as well, only that one counts.
    both = step(
        pipeline(schedule="* * * * *", concurrencyPolicy="Replace"),
        "2026-11-30T10:01:02Z",
        [*BY_HAND, *ACTIVE],
    )
    assert both.cancel == ["orders-1"]


def test_a_run_carrying_a_schedule_time_but_not_owned_by_the_pipeline_is_not_scheduled() -> None:
    doc = scheduled_run(pipeline(), at("2026-11-30T10:01:00Z"))
    copied = {k: v for k, v in doc["metadata"].items() if k != "ownerReferences"}
    assert seen_run({**doc, "metadata": copied}).scheduled is None
    other = {**doc["metadata"]}
    other["ownerReferences"] = [{**doc["metadata"]["ownerReferences"][0], "name": "other"}]
    assert seen_run({**doc, "metadata": other}).scheduled is None  # another Pipeline's


def test_each_reason_remembers_only_its_last_message() -> None:
    said: dict[str, str] = {}
    p = pipeline(schedule="* * * * *", concurrencyPolicy="Forbid")
    posted = []
    for minute in range(1, 60):
        out = step(p, f"2026-11-30T10:{minute:02d}:02Z", ACTIVE)
        posted += unsaid(out.events, said)
        posted += unsaid(out.events, said)  # the next pass before the next due time
    assert [e.reason for e in posted] == ["RunAlreadyActive"] * 59  # once per due time
    assert list(said) == ["RunAlreadyActive"]  # and one message kept, not 59


def test_allow_starts_beside_an_active_run() -> None:
    out = step(pipeline(schedule="* * * * *"), "2026-11-30T10:01:02Z", ACTIVE)
    assert out.cancel == [] and out.create == at("2026-11-30T10:01:00Z")


def test_suspend_creates_nothing_and_has_no_next_time() -> None:
    out = step(pipeline(schedule="* * * * *", suspend=True), "2026-11-30T10:05:00Z")
    assert out.create is None and out.status.next_schedule_time is None
    assert out.requeue_after is None


@pytest.mark.parametrize("expr", ["61 * * * *", "0 25 * * *", "* * * * MON-XYZ", "0 0 31 2 *"])
def test_a_bad_schedule_is_a_condition_and_one_event(expr: str) -> None:
    out = step(pipeline(schedule=expr), "2026-11-30T10:05:00Z")
    cond = next(c for c in out.status.conditions if c.type == CONDITION_SCHEDULE_VALID)
    assert (cond.status, cond.reason) == ("False", "InvalidSchedule")
    assert "spec.schedule" in cond.message
    assert reasons(out) == ["InvalidSchedule"] and out.create is None
    same = pipeline(out.status.model_dump(by_alias=True), schedule=expr)
    again = step(same, "2026-11-30T10:06:00Z")
    assert reasons(again) == [], "said once"


def test_a_schedule_that_is_not_cron_is_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="schedule"):
        pipeline(schedule="every day")
    with pytest.raises(ValueError, match="unknown time zone"):
        pipeline(schedule="@daily", timeZone="Mars/Olympus")


def test_a_valid_schedule_says_so() -> None:
    out = step(pipeline(schedule="@daily", timeZone="Europe/Berlin"), "2026-11-30T10:05:00Z")
    cond = next(c for c in out.status.conditions if c.type == CONDITION_SCHEDULE_VALID)
    assert cond.status == "True"
    assert out.status.next_schedule_time == at("2026-11-30T23:00:00Z")  # midnight CET


def times(expr: str, zone: str, after: str, count: int) -> list[datetime]:
    found = cron_times(expr, zone, at(after))
    return [next(found) for _ in range(count)]


def test_dst_spring_forward_runs_a_skipped_time_at_the_next_valid_minute() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    assert times("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3) == [
        at("2026-03-28T01:30:00Z"),  # 02:30 CET
        at("2026-03-29T01:00:00Z"),  # 03:00 CEST, the first valid minute after
        at("2026-03-30T00:30:00Z"),  # 02:30 CEST
    ]


def test_dst_fall_back_runs_a_daily_time_once() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    assert times("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2) == [
        at("2026-10-25T00:30:00Z"),  # 02:30 CEST, the first of the two
        at("2026-10-26T01:30:00Z"),  # 02:30 CET next day
    ]
    # A minute field fires in both copies of the repeated hour.
    assert len(times("*/30 * * * *", "Europe/Berlin", "2026-10-24T23:45:00Z", 4)) == 4
    assert times("*/30 * * * *", "Europe/Berlin", "2026-10-24T23:45:00Z", 4)[-1] == at(
        "2026-10-25T01:30:00Z"
    )


def test_a_missed_time_across_a_dst_change_is_found_in_the_zone() -> None:
    p = pipeline(
        {"lastScheduleTime": "2026-03-28T01:30:00Z"},
        schedule="30 2 * * *",
        timeZone="Europe/Berlin",
    )
    out = step(p, "2026-03-29T01:10:00Z")
    assert out.create == at("2026-03-29T01:00:00Z")
    assert out.status.next_schedule_time == at("2026-03-30T00:30:00Z")


def test_time_zones_move_the_schedule() -> None:
    assert times("0 9 * * *", "America/New_York", "2026-11-30T00:00:00Z", 1) == [
        at("2026-11-30T14:00:00Z")
    ]
    assert times("0 9 * * *", "Asia/Kolkata", "2026-11-30T00:00:00Z", 1) == [
        at("2026-11-30T03:30:00Z")
    ]


def test_history_limits_delete_the_oldest_scheduled_runs_first() -> None:
    def done(name: str, phase: Phase, minute: int, scheduled: bool = True) -> SeenRun:
        when = CREATED + timedelta(minutes=minute)
        return SeenRun(
            name=name,
            phase=phase,
            created=when,
            scheduled=when if scheduled else None,
            completed=when + timedelta(seconds=30),
        )

    runs = [
        done("s1", Phase.SUCCEEDED, 1),
        done("s2", Phase.SUCCEEDED, 2),
        done("s3", Phase.SUCCEEDED, 3),
        done("f1", Phase.FAILED, 4),
        done("c1", Phase.CANCELLED, 5),
        done("f2", Phase.FAILED, 6),
        done("by-hand", Phase.SUCCEEDED, 0, scheduled=False),
        done("active", Phase.RUNNING, 0),
    ]
    p = pipeline(successfulRunsHistoryLimit=1, failedRunsHistoryLimit=1)
    out = step(p, "2026-11-30T11:00:00Z", runs)
    assert out.delete == ["s1", "s2", "f1", "c1"]
    assert [r.name for r in out.status.recent_runs] == ["f2", "s3", "by-hand", "active"]
    now = "2026-11-30T11:00:00Z"
    keep_all = step(pipeline(successfulRunsHistoryLimit=10, failedRunsHistoryLimit=10), now, runs)
    assert keep_all.delete == []
    none = step(pipeline(successfulRunsHistoryLimit=0, failedRunsHistoryLimit=0), now, runs)
    assert none.delete == ["s1", "s2", "s3", "f1", "c1", "f2"]


def test_scheduled_runs_are_named_by_their_time_and_owned_by_the_pipeline() -> None:
    when = at("2026-11-30T10:01:00Z")
    assert scheduled_run_name("orders", when) == f"orders-{int(when.timestamp()) // 60}"
    assert len(scheduled_run_name("x" * 80, when)) <= 63
    doc = scheduled_run(pipeline(), when)
    owner = doc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Pipeline",
        "orders",
        "p-1",
        True,
    )
    assert doc["metadata"]["annotations"][SCHEDULED_TIME_ANNOTATION] == "2026-11-30T10:01:00Z"
    assert doc["spec"] == {"pipelineRef": {"name": "orders"}}
    created = {**doc["metadata"], "creationTimestamp": "2026-11-30T10:01:01Z"}
    seen = seen_run({**doc, "metadata": created})
    assert seen.scheduled == when and seen.phase is None and seen.active


def test_seen_run_reads_leniently() -> None:
    meta = {"name": "x", "annotations": {SCHEDULED_TIME_ANNOTATION: "junk"}}
    seen = seen_run({"metadata": meta, "status": {"phase": "Weird"}})
    assert (seen.name, seen.phase, seen.scheduled) == ("x", None, None)
