"""A schedule's concurrencyPolicy on the real API server and operator, when a minute
comes while a scheduled run of the Pipeline is still active: Forbid starts no run and
says why (an Event on the Pipeline), Replace cancels the active run and starts the new
one. Two Pipelines in one namespace share the one wait for the minute."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lineagehub.api.pipeline import SCHEDULED_TIME_ANNOTATION
from tests.helpers import Obj, apply, get, wait_until
from tests.integration.test_pipeline_ref import pipeline

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]


def scheduled(kubectl: Kubectl, ns: str, policy: str) -> str:
    """A Pipeline that runs every minute under `policy`, and a run of it as its schedule
    made one a while ago (owned, labelled, annotated), held active by `suspend`."""
    name = policy.lower()
    doc = pipeline(ns, name)
    doc["spec"]["params"][0]["default"] = "2026-11-30"
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{ns}/{name}-$(params.date).parquet"
    doc["spec"] |= {"schedule": "* * * * *", "concurrencyPolicy": policy}
    apply(kubectl, doc)
    uid = get(kubectl, "pipeline", name, "-n", ns)["metadata"]["uid"]
    earlier = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:00Z")
    held = {
        "apiVersion": "lineagehub.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {
            "name": f"{name}-held",
            "namespace": ns,
            "labels": {"lineagehub.io/pipeline": name},
            "annotations": {SCHEDULED_TIME_ANNOTATION: earlier},
            "ownerReferences": [
                {
                    "apiVersion": "lineagehub.io/v1alpha1",
                    "kind": "Pipeline",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "spec": {"pipelineRef": {"name": name}, "suspend": True},
    }
    apply(kubectl, held)
    return name


def runs_of(kubectl: Kubectl, ns: str, pipeline_name: str) -> dict[str, Obj]:
    items = get(kubectl, "pipelineruns", "-n", ns, "-l", f"lineagehub.io/pipeline={pipeline_name}")
    return {r["metadata"]["name"]: r for r in items["items"]}


def phase(run: Obj) -> str | None:
    value: str | None = (run.get("status") or {}).get("phase")
    return value


def test_forbid_waits_and_replace_cancels_the_active_scheduled_run(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    forbid = scheduled(kubectl, namespace, "Forbid")
    replace = scheduled(kubectl, namespace, "Replace")

    # Replace: when the minute comes the new run is created and the held one cancelled.
    def replaced() -> dict[str, Obj] | None:
        runs = runs_of(kubectl, namespace, replace)
        return runs if len(runs) == 2 else None

    runs = wait_until(replaced, timeout=150, every=1)
    (new,) = [n for n in runs if n != f"{replace}-held"]
    minute = datetime.fromisoformat(
        runs[new]["metadata"]["annotations"][SCHEDULED_TIME_ANNOTATION].replace("Z", "+00:00")
    )
    assert new == f"{replace}-{int(minute.timestamp()) // 60}"
    held = wait_until(
        lambda: (
            (r := runs_of(kubectl, namespace, replace)[f"{replace}-held"])
            and (r if phase(r) == "Cancelled" else None)
        ),
        timeout=60,
    )
    assert held["spec"]["cancel"] is True
    assert phase(runs_of(kubectl, namespace, replace)[new]) != "Cancelled"

    # Forbid: the same minute came for it too; it said why it waits, and made no run.
    def waited() -> list[Obj] | None:
        events = get(kubectl, "events", "-n", namespace)["items"]
        said = [
            e
            for e in events
            if e["involvedObject"]["name"] == forbid and e["reason"] == "RunAlreadyActive"
        ]
        return said or None

    (event, *_) = wait_until(waited, timeout=90, every=1)
    assert f"{forbid}-held" in event["message"] and "Forbid" in event["message"]
    forbidden = runs_of(kubectl, namespace, forbid)
    assert list(forbidden) == [f"{forbid}-held"]
    assert phase(forbidden[f"{forbid}-held"]) not in ("Cancelled", "Failed")
    assert forbidden[f"{forbid}-held"]["spec"].get("cancel") is not True
