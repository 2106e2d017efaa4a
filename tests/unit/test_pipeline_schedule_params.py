"""A Pipeline's scheduleParams: the context references filled in for the due time (its
date in the schedule's time zone), refused at admission when they cannot work, and
`plan` creating each scheduled run with its due time's values (late runs included)."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from lineagehub_operator.pipelines import scheduled_run
from lineagehub_operator.schedule import plan
from pydantic import ValidationError

from lineagehub.api.params import (
    SCHEDULE_VALUE_PATTERN,
    context_problem,
    fill_context,
    schedule_context,
)
from lineagehub.api.pipeline import Pipeline, scheduled_params
from stack.paths import REPO_ROOT

SPEC: dict[str, Any] = {
    "params": [
        {"name": "date", "type": "date", "default": "2026-01-01"},
        {"name": "stamp"},
        {"name": "region", "default": "eu"},
    ],
    "source": {"uri": "file:///data/orders-$(params.region)-$(params.date).csv", "format": "csv"},
    "sink": {"uri": "file:///data/out-$(params.date).parquet", "format": "parquet"},
    "schedule": "30 0 * * *",
    "timeZone": "Europe/Berlin",
    "scheduleParams": {"date": "$(context.scheduledDate)", "stamp": "$(context.scheduledTime)"},
}
CREATED = datetime(2026, 11, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def pipeline(status: dict[str, Any] | None = None, **changes: Any) -> Pipeline:
    spec = {k: v for k, v in (copy.deepcopy(SPEC) | changes).items() if v is not None}
    meta = {"name": "orders", "namespace": "ns", "uid": "p-1", "generation": 1}
    return Pipeline.model_validate({"metadata": meta, "spec": spec, "status": status})


@pytest.mark.parametrize(
    ("due", "zone", "date"),
    [
        # 00:30 in Berlin is the evening before in UTC: the zone's date, not UTC's.
        ("2026-11-29T23:30:00Z", "Europe/Berlin", "2026-11-30"),
        ("2026-11-29T23:30:00Z", None, "2026-11-29"),
        # The same UTC clock time on either side of the DST change: CEST (+2) crosses
        # midnight, CET (+1) does not.
        ("2026-06-30T22:30:00Z", "Europe/Berlin", "2026-07-01"),
        ("2026-12-30T22:30:00Z", "Europe/Berlin", "2026-12-30"),
        ("2026-11-30T03:00:00Z", "America/New_York", "2026-11-29"),
    ],
)
def test_the_scheduled_date_is_the_due_times_date_in_the_zone(
    due: str, zone: str | None, date: str
) -> None:
    context = schedule_context(at(due), zone)
    assert context == {"scheduledTime": due, "scheduledDate": date}


def test_fill_context_replaces_every_reference() -> None:
    context = {"scheduledTime": "2026-11-30T06:00:00Z", "scheduledDate": "2026-11-30"}
    text = "d=$(context.scheduledDate)/t=$(context.scheduledTime)/$$(context.scheduledDate)"
    assert fill_context(text, context) == "d=2026-11-30/t=2026-11-30T06:00:00Z/$2026-11-30"


@pytest.mark.parametrize(
    ("value", "unknown"),
    [
        ("$(context.scheduledDate)", None),
        ("plain text, $ and ( and $x", None),
        ("$$(context.scheduledTime))", None),
        ("$(context.now)", "$(context.now) is not a context reference"),
        ("$(params.region)", "$(params.region) is not a context reference"),
        ("$(context.scheduledDate", "unclosed $("),
        ("ok $(context.scheduledDate) $(context.ScheduledDate)", "$(context.ScheduledDate)"),
    ],
)
def test_context_problem_names_what_is_not_a_context_reference(
    value: str, unknown: str | None
) -> None:
    problem = context_problem(value)
    if unknown is None:
        assert problem is None
    else:
        assert problem is not None and unknown in problem
        assert "$(context.scheduledTime) or $(context.scheduledDate)" in problem


@given(st.text(alphabet="$()context.scheduledTimeDa x", max_size=40))
def test_a_value_is_accepted_exactly_when_filling_it_leaves_no_reference(value: str) -> None:
    filled = fill_context(value, schedule_context(CREATED, None))
    assert (context_problem(value) is None) == ("$(" not in filled)


def test_the_crd_refuses_with_the_same_pattern_and_rules() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "lineagehub.io_pipelines.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (value_rule,) = spec["properties"]["scheduleParams"]["x-kubernetes-validations"]
    assert f"'^{SCHEDULE_VALUE_PATTERN}$'" in value_rule["rule"]
    pattern = re.search(r"'\^(.*)\$'", value_rule["rule"])
    assert pattern is not None and re.fullmatch(pattern.group(1), "$(context.now)") is None
    rules = {r["rule"] for r in spec["x-kubernetes-validations"]}
    assert any("has(self.scheduleParams)" in r and "has(self.schedule)" in r for r in rules)
    assert any("self.params.exists(p, p.name == k)" in r for r in rules)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"schedule": None, "timeZone": None}, ["scheduleParams apply only with a schedule"]),
        (
            {"scheduleParams": {"day": "$(context.scheduledDate)"}},
            ["spec.scheduleParams.day", "not a parameter", "declared: date, region, stamp"],
        ),
        (
            {"scheduleParams": {"date": "$(context.dueDate)"}},
            ["spec.scheduleParams.date", "$(context.dueDate) is not a context reference"],
        ),
        (
            {"scheduleParams": {"stamp": "$(params.region)"}},
            ["spec.scheduleParams.stamp", "$(params.region)"],
        ),
        (
            {"scheduleParams": {"date": "$(context.scheduledTime)"}},
            ["spec.scheduleParams.date", "a date written YYYY-MM-DD", "date parameter"],
        ),
        (
            {"scheduleParams": {"date": "yesterday"}},
            ["spec.scheduleParams.date", "a date written YYYY-MM-DD"],
        ),
    ],
)
def test_bad_schedule_params_are_refused_naming_the_field_and_the_fix(
    changes: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ValidationError) as err:
        pipeline(**changes)
    for word in words:
        assert word in str(err.value)


def test_literal_and_mixed_values_of_the_right_type_are_accepted() -> None:
    p = pipeline(scheduleParams={"date": "2026-11-30", "region": "eu-$(context.scheduledDate)"})
    assert scheduled_params(p, at("2026-11-29T23:30:00Z")) == {
        "date": "2026-11-30",
        "region": "eu-2026-11-30",
    }


def test_plan_creates_the_run_with_its_due_times_values_in_the_zone() -> None:
    p = pipeline({"lastScheduleTime": "2026-11-28T23:30:00Z"})
    out = plan(p, [], at("2026-11-29T23:30:05Z"), CREATED)
    assert out.create == at("2026-11-29T23:30:00Z")  # 00:30 in Berlin on the 30th
    assert out.params == {"date": "2026-11-30", "stamp": "2026-11-29T23:30:00Z"}
    run = scheduled_run(p, out.create, out.params)
    assert run["spec"] == {
        "pipelineRef": {"name": "orders"},
        "params": {"date": "2026-11-30", "stamp": "2026-11-29T23:30:00Z"},
    }


def test_a_late_run_gets_the_values_of_the_time_it_was_due() -> None:
    # Due 00:30 Berlin on the 30th; the operator comes back two days later, within the
    # deadline of the latest missed time only: that one runs, with that day's date.
    p = pipeline({"lastScheduleTime": "2026-11-27T23:30:00Z"}, startingDeadlineSeconds=7200)
    out = plan(p, [], at("2026-11-30T00:10:00Z"), CREATED)
    assert out.create == at("2026-11-29T23:30:00Z")
    assert out.params["date"] == "2026-11-30"
    assert out.params["stamp"] == "2026-11-29T23:30:00Z"
    # Past the deadline nothing is created, so no values either.
    assert plan(p, [], at("2026-11-30T02:00:00Z"), CREATED).params == {}
    # A catch-up without a deadline gets the latest missed time's date, not today's.
    p = pipeline({"lastScheduleTime": "2026-11-20T23:30:00Z"}, timeZone=None, schedule="0 6 * * *")
    out = plan(p, [], at("2026-11-30T05:00:00Z"), CREATED)
    assert out.create == at("2026-11-29T06:00:00Z")
    assert out.params == {"date": "2026-11-29", "stamp": "2026-11-29T06:00:00Z"}


def test_without_schedule_params_the_run_gives_none_and_takes_the_defaults() -> None:
    p = pipeline({"lastScheduleTime": "2026-11-28T23:30:00Z"}, scheduleParams=None)
    out = plan(p, [], at("2026-11-29T23:30:05Z"), CREATED)
    assert out.create is not None and out.params == {}
    assert scheduled_run(p, out.create, out.params)["spec"] == {"pipelineRef": {"name": "orders"}}


def test_a_value_that_fails_its_type_at_run_time_is_an_event_not_a_run() -> None:
    # Admission refuses it; an object that slipped past (an older operator) must not crash.
    p = pipeline({"lastScheduleTime": "2026-11-28T23:30:00Z"})
    bad = {"date": "$(context.scheduledTime)"}
    p = p.model_copy(update={"spec": p.spec.model_copy(update={"schedule_params": bad})})
    out = plan(p, [], at("2026-11-29T23:30:05Z"), CREATED)
    assert out.create is None and out.params == {}
    assert [e.reason for e in out.events] == ["InvalidScheduleParams"]
    assert "spec.scheduleParams.date" in out.events[0].message
    assert out.status.last_schedule_time == at("2026-11-29T23:30:00Z")


def test_the_examples_commented_schedule_validates_and_fills_the_date() -> None:
    text = (REPO_ROOT / "examples" / "pipeline.yaml").read_text()
    doc = yaml.safe_load(re.sub(r"(?m)^  #   ", "  ", text))
    p = Pipeline.model_validate(doc)
    assert p.spec.schedule == "0 6 * * *"
    # 06:00 in Berlin on 2026-11-30 is 05:00 UTC.
    assert scheduled_params(p, at("2026-11-30T05:00:00Z")) == {"date": "2026-11-30"}
