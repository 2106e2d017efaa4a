"""A run whose workspace claim is deleted while it goes on fails at once, saying why and
what to do, instead of waiting for its next stage's timeout.

An operator of the test's own runs in claim mode (no host-path workspace; a storage
class of the test's, which a PersistentVolume made here serves, so the claim binds as a
provisioner's would). The source is a loopback server that answers only when the test
lets it: the claim is deleted while the extract stage runs (Kubernetes' claim
protection keeps it until that pod ends), then extract finishes, the claim goes, and
kube-scheduler cannot place the transform pod (`persistentvolumeclaim ... not found`,
or `... is being deleted`). The run must fail WorkspaceLost within a minute; before,
it stayed Running until the stage's timeout.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Obj, get, wait_until
from tests.integration.test_operator import Kubectl, condition, jobs_of, wait_phase
from tests.integration.test_operator_config_repair import (
    gated_source,  # noqa: F401 - a fixture
    start_held,
)
from tests.integration.test_operator_verify_restart import (
    stack_operator_stopped,  # noqa: F401 - a fixture
)
from tests.operator_process import operator_process

pytestmark = pytest.mark.controlplane


@pytest.fixture
def storage_class(kubectl: Kubectl, namespace: str, tmp_path: Path) -> Iterator[str]:
    """A storage class name of this test's alone, with one PersistentVolume to bind."""
    name = f"lh-{namespace}"
    volume: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": name,
            "hostPath": {"path": str(tmp_path / "volume")},
        },
    }
    kubectl("create", "-f", "-", input=json.dumps(volume))
    try:
        yield name
    finally:
        kubectl("delete", "persistentvolume", name, "--wait=false", check=False)


def _claim(kubectl: Kubectl, ns: str, run: str) -> Obj:
    claims: list[Obj] = get(
        kubectl, "persistentvolumeclaims", "-n", ns, "-l", f"lineagehub.io/pipelinerun={run}"
    )["items"]
    (claim,) = claims
    return claim


def test_a_run_whose_workspace_claim_is_deleted_fails_at_once_saying_so(
    stack_operator_stopped: None,  # noqa: F811 - the fixture imported above
    kubectl: Kubectl,
    namespace: str,
    storage_class: str,
    gated_source: tuple[str, threading.Event],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    uri, gate = gated_source
    settings = {
        "LINEAGEHUB_WORKSPACE_HOST_PATH": "",
        "LINEAGEHUB_WORKSPACE_STORAGE_CLASS": storage_class,
    }
    with operator_process([namespace], tmp_path / "operator.log", settings):
        start_held(kubectl, namespace, "lost", uri)
        claim = _claim(kubectl, namespace, "lost")
        assert claim["status"]["phase"] == "Bound", claim  # the run really used it
        name = claim["metadata"]["name"]
        kubectl("delete", "persistentvolumeclaim", name, "-n", namespace, "--wait=false")
        gate.set()

        status = wait_phase(kubectl, namespace, "lost", "Failed", timeout=60)
        said = condition(status)
        assert said["reason"] == "WorkspaceLost", said
        assert f"workspace claim {namespace}/{name}" in said["message"]
        assert "stage transform cannot start" in said["message"]
        assert "start it again from its first stage" in said["message"]
        stages = {s["name"]: s for s in status["stages"]}
        assert stages["extract"]["phase"] == "Succeeded"
        assert (stages["transform"]["phase"], stages["transform"]["reason"]) == (
            "Failed",
            "WorkspaceLost",
        )
        assert stages.get("load", {}).get("phase", "Pending") == "Pending"

        # The transform pod was refused by the scheduler for the claim (the deletion
        # mattered), and its Job, which could never run, is deleted.
        def refused_pod() -> bool:
            events = get(kubectl, "events", "-n", namespace)["items"]
            return any(
                e.get("reason") == "FailedScheduling"
                and f'persistentvolumeclaim "{name}"' in (e.get("message") or "")
                for e in events
            )

        wait_until(refused_pod, timeout=30)

        def transform_job_gone() -> bool:
            return not [
                j
                for j in jobs_of(kubectl, namespace, "lost")
                if j["metadata"]["labels"]["lineagehub.io/stage"] == "transform"
                and not j["metadata"].get("deletionTimestamp")
            ]

        wait_until(transform_job_gone, timeout=30)
        log = (tmp_path / "operator.log").read_text()
        assert "Traceback" not in log, log[-3000:]
