"""A Pipeline's schedule on the real API server, Job controller and operator: a run
every minute (waited for, never timed) created with its due date in the Pipeline's time
zone as its `date` param, bad scheduleParams refused at admission, the Pipeline's status
and printer columns, the failed-runs history limit deleting the oldest first, and
deleting the Pipeline taking its runs and their Jobs with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lineagehub.api.pipeline import SCHEDULED_TIME_ANNOTATION
from tests.helpers import Obj, apply, get, wait_until
from tests.integration.test_pipeline_ref import pipeline, ref_run

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pipeline_of(kubectl: Kubectl, ns: str) -> Obj:
    found: Obj = get(kubectl, "pipeline", "orders", "-n", ns)
    return found


def run_names(kubectl: Kubectl, ns: str) -> list[str]:
    return sorted(r["metadata"]["name"] for r in get(kubectl, "pipelineruns", "-n", ns)["items"])


def phase_is(kubectl: Kubectl, ns: str, run: Obj, phase: str) -> bool:
    status = get(kubectl, "pipelinerun", run["metadata"]["name"], "-n", ns).get("status") or {}
    return bool(status.get("phase") == phase)


def owned_by(uid: str) -> list[Obj]:
    kind = {"apiVersion": "lineagehub.io/v1alpha1", "kind": "Pipeline", "name": "orders"}
    return [{**kind, "uid": uid}]


def runs_of(kubectl: Kubectl, ns: str) -> list[Obj]:
    items: list[Obj] = get(kubectl, "pipelineruns", "-n", ns, "-l", "lineagehub.io/pipeline")[
        "items"
    ]
    return items


def test_a_run_every_minute_and_the_pipelines_status(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    doc = pipeline(namespace)
    # UTC+14: from 10:00 UTC on, the zone's date is already the next day's.
    zone = "Pacific/Kiritimati"
    doc["spec"] |= {
        "schedule": "* * * * *",
        "timeZone": zone,
        "concurrencyPolicy": "Forbid",
        "scheduleParams": {"date": "$(context.scheduledDate)"},
    }
    # The API server refuses scheduleParams that cannot work, naming the fix.
    bad = json.loads(json.dumps(doc))
    bad["spec"]["scheduleParams"] = {"day": "$(context.now)"}
    refused = kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0
    assert "every scheduleParams key must be a parameter declared in spec.params" in (
        refused.stderr
    )
    assert "may use only the context references" in refused.stderr
    apply(kubectl, doc)
    created = when(pipeline_of(kubectl, namespace)["metadata"]["creationTimestamp"])

    # The real signal: the operator creates the run when the minute comes.
    def scheduled_run() -> Obj | None:
        runs = runs_of(kubectl, namespace)
        return runs[0] if runs else None

    first: Obj = wait_until(scheduled_run, timeout=150, every=1)
    meta = first["metadata"]
    scheduled = when(meta["annotations"][SCHEDULED_TIME_ANNOTATION])
    assert scheduled > created and scheduled.second == 0
    assert meta["name"] == f"orders-{int(scheduled.timestamp()) // 60}"
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Pipeline", "orders", True)
    # The run was created with its due date in the Pipeline's zone, and read that day.
    due_date = scheduled.astimezone(ZoneInfo(zone)).date().isoformat()
    assert first["spec"] == {
        "pipelineRef": {"name": "orders"},
        "params": {"date": due_date},
        "cancel": False,
        "suspend": False,
    }

    def settled() -> Obj | None:
        status: Obj = pipeline_of(kubectl, namespace).get("status") or {}
        return status if status.get("lastRunPhase") in ("Succeeded", "Failed") else None

    status = wait_until(settled, timeout=150, every=1)
    assert status["lastRunPhase"] == "Succeeded"
    ran = get(kubectl, "pipelinerun", meta["name"], "-n", namespace)["status"]["pipelineSpec"]
    assert ran["sink"]["uri"] == f"file:///data/output/{namespace}/{due_date}.parquet"
    assert when(status["lastScheduleTime"]) >= scheduled
    assert when(status["nextScheduleTime"]) > when(status["lastScheduleTime"])
    # Upcoming as of the pass that wrote it, on the operator's clock (not this test's,
    # read a moment later, maybe past a minute the operator has yet to act on): that
    # pass saw the newest run end, so it ran after the run's completionTime.
    newest = status["recentRuns"][0]
    assert (newest["name"], newest["phase"]) == (status["lastRun"], status["lastRunPhase"])
    assert when(status["nextScheduleTime"]) > when(newest["completionTime"])
    valid = next(c for c in status["conditions"] if c["type"] == "ScheduleValid")
    assert valid["status"] == "True"
    names = [r["name"] for r in status["recentRuns"]]
    assert meta["name"] in names

    # Suspended: the printer columns show the schedule, the last run and its phase.
    suspend = '{"spec":{"suspend":true}}'
    kubectl("patch", "pipeline", "orders", "-n", namespace, "--type=merge", "-p", suspend)
    final = wait_until(
        lambda: (
            (s := pipeline_of(kubectl, namespace).get("status") or {})
            and "nextScheduleTime" not in s
            and s
        ),
        timeout=60,
    )
    header, row = kubectl("get", "pipelines", "-n", namespace).stdout.splitlines()
    columns = ["NAME", "SCHEDULE", "SUSPEND", "LAST-RUN", "PHASE", "NEXT-RUN", "ACTIVE"]
    assert header.split() == [*columns, "AGE"]
    cells = row.split()
    assert cells[:5] == ["orders", "*", "*", "*", "*"]  # the schedule's five fields
    assert cells[5:8] == ["*", "true", final["lastRun"]]
    assert cells[8] == final["lastRunPhase"]


def test_failed_history_limit_deletes_the_oldest_and_the_pipeline_takes_its_runs(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    doc = pipeline(namespace)
    doc["spec"] |= {"failedRunsHistoryLimit": 1}
    apply(kubectl, doc)
    uid = get(kubectl, "pipeline", "orders", "-n", namespace)["metadata"]["uid"]
    # Three runs as the schedule makes them (owned, annotated), cancelled from the start:
    # each ends Cancelled without a Job, which counts against failedRunsHistoryLimit.
    for minute in (1, 2, 3):
        run = ref_run(namespace, f"orders-{minute}", {"date": "2026-11-30"}, cancel=True)
        run["metadata"] |= {
            "labels": {"lineagehub.io/pipeline": "orders"},
            "annotations": {SCHEDULED_TIME_ANNOTATION: f"2026-11-30T10:0{minute}:00Z"},
            "ownerReferences": owned_by(uid),
        }
        apply(kubectl, run)
        wait_until(partial(phase_is, kubectl, namespace, run, "Cancelled"), timeout=60)
    # A run made by hand is the author's: history limits never delete it.
    apply(kubectl, ref_run(namespace, "by-hand", {"date": "2026-11-30"}, cancel=True))

    def kept() -> list[str] | None:
        names = run_names(kubectl, namespace)
        return names if names == ["by-hand", "orders-3"] else None

    assert wait_until(kept, timeout=60) == ["by-hand", "orders-3"]

    # Deleting the Pipeline deletes the runs it owns, and their Jobs with them.
    active = ref_run(namespace, "orders-4", {"date": "2026-11-30"})
    active["metadata"]["ownerReferences"] = owned_by(uid)
    apply(kubectl, active)
    wait_until(lambda: get(kubectl, "jobs", "-n", namespace)["items"], timeout=60)
    kubectl("delete", "pipeline", "orders", "-n", namespace, "--wait=true", timeout=120)

    def orphans() -> list[str] | None:
        left = run_names(kubectl, namespace)
        jobs = get(kubectl, "jobs", "-n", namespace)["items"]
        return None if jobs or left != ["by-hand"] else left

    assert wait_until(orphans, timeout=120) == ["by-hand"]
