"""The active-run limit of a namespace on the real API server and operator: five runs
under a limit of two never have more than two running, the others wait Pending with
reason Queued, and they leave the queue in creation order until all have succeeded."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from stack.paths import REPO_ROOT
from tests.helpers import Obj, get, wait_until

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
NAMES = [f"q{i}" for i in range(5)]


def apply_run(kubectl: Kubectl, namespace: str, name: str) -> None:
    doc: Obj = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{namespace}/{name}.parquet"
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def test_five_runs_under_a_limit_of_two_queue_in_creation_order(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("annotate", "namespace", namespace, "lineagehub.io/max-active-runs=2")
    for name in NAMES:
        apply_run(kubectl, namespace, name)

    started: list[str] = []
    queued_seen: set[str] = set()

    def observe() -> bool:
        runs = {
            r["metadata"]["name"]: r.get("status") or {}
            for r in get(kubectl, "pipelineruns", "-n", namespace)["items"]
        }
        running = [n for n, s in runs.items() if s.get("phase") == "Running"]
        assert len(running) <= 2, f"over the limit: {running}"
        for name, status in sorted(runs.items()):
            reasons = {c["type"]: c["reason"] for c in status.get("conditions") or []}
            if status.get("phase") == "Pending" and reasons.get("Succeeded") == "Queued":
                queued_seen.add(name)
            if status.get("phase") not in (None, "Pending") and name not in started:
                started.append(name)
        return all(s.get("phase") in ("Succeeded", "Failed") for s in runs.values())

    wait_until(observe, timeout=400, every=0.5)
    phases = {
        r["metadata"]["name"]: r["status"]["phase"]
        for r in get(kubectl, "pipelineruns", "-n", namespace)["items"]
    }
    assert phases == dict.fromkeys(NAMES, "Succeeded")
    assert queued_seen >= {"q2", "q3", "q4"}, queued_seen
    assert "q0" not in queued_seen and "q1" not in queued_seen
    assert started == NAMES, "the queue starts runs in creation order"
    events = get(kubectl, "events", "-n", namespace, "--field-selector", "reason=Queued")
    assert {e["involvedObject"]["name"] for e in events["items"]} >= {"q2", "q3", "q4"}


def test_a_limit_annotation_that_is_not_digits_is_named_in_a_warning_and_ignored(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    # A superscript two is a digit to str.isdigit() but not to int(): once, it failed
    # every pass of the run's daemon and the run never started.
    kubectl("annotate", "namespace", namespace, "lineagehub.io/max-active-runs=\u00b2")
    apply_run(kubectl, namespace, "odd")

    def finished() -> str | None:
        phase = (get(kubectl, "pipelinerun", "odd", "-n", namespace).get("status") or {}).get(
            "phase"
        )
        return phase if phase in ("Succeeded", "Failed") else None

    assert wait_until(finished, timeout=180, every=0.5) == "Succeeded"
    events = get(kubectl, "events", "-n", namespace, "--field-selector", "reason=InvalidLimit")
    [warning] = events["items"]
    assert (warning["type"], warning["involvedObject"]["name"]) == ("Warning", "odd")
    assert "lineagehub.io/max-active-runs='\u00b2'" in warning["message"]
    assert "digits" in warning["message"]
