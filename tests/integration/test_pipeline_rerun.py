"""Re-running a failed run from the stage that failed, on the real API server, Job
controller, process kubelet and stage runner: `lineage-hub rerun` creates a run that
creates a Job for the failed stage only, reads the earlier run's stage outputs from its
workspace, and records the earlier run as the one it continues."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from stack import supervisor
from stack.paths import REPO_ROOT
from stack.pieces import app
from stack.registry import select
from tests.helpers import Obj, get, wait_until

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]
LINEAGE_HUB = str(Path(sys.executable).parent / "lineage-hub")
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())


@pytest.fixture(scope="module")
def operator(stack: Any) -> None:
    supervisor.up(select(["operator"]))


def finished(kubectl: Kubectl, ns: str, name: str) -> Obj:
    def check() -> Obj | None:
        status: Obj = get(kubectl, "pipelinerun", name, "-n", ns).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed", "Cancelled") else None

    found: Obj = wait_until(check, timeout=180, every=0.5)
    return found


def stages_with_jobs(kubectl: Kubectl, ns: str, run: str) -> list[str]:
    jobs = get(kubectl, "jobs", "-n", ns, "-l", f"lineagehub.io/pipelinerun={run}")["items"]
    return sorted(j["metadata"]["labels"]["lineagehub.io/stage"] for j in jobs)


def test_rerun_from_the_failed_stage_reuses_the_finished_ones(
    operator: None, stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    output = app.data_volume() / "output" / namespace
    sink = output / "orders.parquet"
    sink.mkdir(parents=True)  # a directory where the file goes: load fails
    doc: Obj = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": "orders", "namespace": namespace}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{namespace}/orders.parquet"
    doc["spec"]["stages"] = {"defaults": {"retries": 0, "timeoutSeconds": 600}}
    del doc["spec"]["ttlSecondsAfterFinished"]
    kubectl("apply", "-f", "-", input=json.dumps(doc))
    first = finished(kubectl, namespace, "orders")
    assert first["phase"] == "Failed"
    assert [s["phase"] for s in first["stages"]] == ["Succeeded", "Succeeded", "Failed"]
    assert "is a directory" in next(s for s in first["stages"] if s["name"] == "load")["message"]

    sink.rmdir()  # the cause is fixed; extract and transform need not run again
    command = [LINEAGE_HUB, "rerun", "orders", "-n", namespace, "--name", "again"]
    cli = subprocess.run(
        command,
        check=False,
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == "pipelinerun.lineagehub.io/again created"

    again = finished(kubectl, namespace, "again")
    assert again["phase"] == "Succeeded", again
    assert stages_with_jobs(kubectl, namespace, "again") == ["load"]
    assert again["rerunOf"]["runId"] == first["runId"]
    assert again["rerunOf"]["fromStage"] == "load"
    assert again["runId"] != first["runId"]
    extract, transform, load = again["stages"]
    assert (extract["reason"], transform["reason"]) == ("Reused", "Reused")
    assert (
        transform["recordsOut"]
        == next(s for s in first["stages"] if s["name"] == "transform")["recordsOut"]
    )
    assert load["phase"] == "Succeeded" and load["recordsIn"] == transform["recordsOut"]
    assert pq.read_table(sink).num_rows == load["recordsOut"]
    spec = get(kubectl, "pipelinerun", "again", "-n", namespace)["spec"]
    assert spec["rerun"] == {"of": "orders"}
    assert spec["source"] == doc["spec"]["source"]


def test_a_rerun_of_nothing_or_of_an_unfinished_run_fails_naming_the_field(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    doc: Obj = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": "orphan", "namespace": namespace}
    doc["spec"]["rerun"] = {"of": "never-was"}
    kubectl("apply", "-f", "-", input=json.dumps(doc))
    status = finished(kubectl, namespace, "orphan")
    cond = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert (cond["reason"], cond["status"]) == ("InvalidRerun", "False")
    assert "spec.rerun.of" in cond["message"] and "never-was" in cond["message"]
    assert stages_with_jobs(kubectl, namespace, "orphan") == []
