"""Re-running a failed run from the stage that failed, on the real API server, Job
controller, process kubelet and stage runner: `lineage-hub rerun` creates a run that
creates a Job for the failed stage only, reads the earlier run's stage outputs from its
workspace, and records the earlier run as the one it continues."""

from __future__ import annotations

import asyncio
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
from kubernetes.config import new_client_from_config
from lineagehub_operator.kube import KubeApi

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


def test_a_claim_a_rerun_adopted_outlives_the_earlier_run(
    stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    """The real garbage collector: deleting the earlier run (as its history limit or TTL
    does) takes an unadopted claim with it, never the one the re-run is an owner of.
    ConfigMaps stand in as the two owners: the collector treats every kind alike, and a
    PipelineRun here would start running."""
    client = new_client_from_config(config_file=stack.env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    api = KubeApi(client)

    def owner(name: str) -> Obj:
        kubectl("create", "configmap", name, "-n", namespace)
        made = get(kubectl, "configmap", name, "-n", namespace)["metadata"]
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": made["uid"]}

    earlier, again = owner("orders"), owner("again")

    def claim(name: str) -> None:
        ref = {**earlier, "controller": True, "blockOwnerDeletion": True}
        doc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [ref]},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Mi"}},
            },
        }
        kubectl("apply", "-f", "-", input=json.dumps(doc))

    claim("orders-workspace")
    claim("unadopted")
    adopter = {**again, "controller": False, "blockOwnerDeletion": False}
    assert asyncio.run(api.add_claim_owner(namespace, "orders-workspace", adopter))
    assert asyncio.run(api.add_claim_owner(namespace, "orders-workspace", adopter))  # once
    refs = get(kubectl, "pvc", "orders-workspace", "-n", namespace)["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == [earlier["uid"], again["uid"]]
    assert refs[0]["controller"] is True and refs[1]["controller"] is False

    try:
        kubectl("delete", "configmap", "orders", "-n", namespace)

        def collected() -> dict[str, Obj]:
            # The collector deletes what only the earlier run owned (the claim then waits
            # on its protection finalizer) and drops the dangling reference from the rest.
            left = {
                p["metadata"]["name"]: p["metadata"]
                for p in get(kubectl, "pvc", "-n", namespace)["items"]
            }
            gone = "unadopted" not in left or "deletionTimestamp" in left["unadopted"]
            refs = [r["uid"] for r in left["orders-workspace"].get("ownerReferences", [])]
            return left if gone and refs == [again["uid"]] else {}

        left = wait_until(collected, timeout=60)
        assert "deletionTimestamp" not in left["orders-workspace"]
        # A claim on its way out cannot be kept: the re-run is refused instead.
        assert not asyncio.run(api.add_claim_owner(namespace, "unadopted", adopter))
        assert not asyncio.run(api.add_claim_owner(namespace, "never-was", adopter))
    finally:
        for name in ("orders-workspace", "unadopted"):  # no volume was bound: let them go
            kubectl(
                "patch",
                "pvc",
                name,
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
