"""The process kubelet against the real control plane: Jobs end to end.

The Job, garbage-collector and ttl-after-finished controllers and the
scheduler are the real ones; only the kubelet is ours.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stack import supervisor
from stack.registry import select
from tests.helpers import get, wait_until

pytestmark = pytest.mark.controlplane

Obj = dict[str, Any]


def job_manifest(name: str, code: str, **spec: Any) -> str:
    pod_spec: Obj = {
        "restartPolicy": spec.pop("restartPolicy", "Never"),
        "containers": [
            {
                "name": "main",
                "image": "python:3.12",
                "command": ["python", "-c", code],
                **spec.pop("container", {}),
            }
        ],
    }
    doc = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}, **spec},
    }
    return json.dumps(doc)


def job_pods(kubectl: Callable[..., Any], ns: str, job: str) -> list[Obj]:
    items: list[Obj] = get(kubectl, "pods", "-n", ns, "-l", f"job-name={job}")["items"]
    return items


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_node_is_ready_with_lease(kubectl: Callable[..., Any]) -> None:
    node = get(kubectl, "node", "local")
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert conditions["MemoryPressure"] == "False"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.4"
    assert node["status"]["allocatable"]["pods"] == "110"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "local"
    lease = get(kubectl, "lease", "local", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "local"


def test_job_completes_with_message_and_logs(kubectl: Callable[..., Any], namespace: str) -> None:
    code = (
        "print('hello from the job'); open('/dev/termination-log', 'w').write('{\"records\": 42}')"
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=job_manifest("ok", code))
    kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/ok", "--timeout=60s")
    (pod,) = job_pods(kubectl, namespace, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert term["message"] == '{"records": 42}'
    logs = kubectl("logs", "-n", namespace, "job/ok")
    assert logs.stdout == "hello from the job\n"


def test_failing_job_honours_backoff_limit(kubectl: Callable[..., Any], namespace: str) -> None:
    manifest = job_manifest("bad", "import sys; print('nope'); sys.exit(3)", backoffLimit=1)
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    kubectl("wait", "-n", namespace, "--for=condition=Failed", "job/bad", "--timeout=90s")
    job = get(kubectl, "job", "bad", "-n", namespace)
    assert job["status"]["failed"] == 2
    reasons = {c["type"]: c.get("reason") for c in job["status"]["conditions"]}
    assert reasons["Failed"] == "BackoffLimitExceeded"
    pods = job_pods(kubectl, namespace, "bad")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_deleting_a_job_ends_its_processes(kubectl: Callable[..., Any], namespace: str) -> None:
    code = "import time; print('working', flush=True); time.sleep(300)"
    kubectl("apply", "-n", namespace, "-f", "-", input=job_manifest("long", code))

    def running_pid() -> int | None:
        for pod in job_pods(kubectl, namespace, "long"):
            for cs in pod["status"].get("containerStatuses") or []:
                if cs["state"].get("running") and cs.get("containerID"):
                    return int(cs["containerID"].split("://")[1])
        return None

    pid = wait_until(running_pid)
    assert _alive(pid)
    kubectl("delete", "-n", namespace, "job/long", "--cascade=background", "--wait=true")
    wait_until(lambda: not job_pods(kubectl, namespace, "long"), timeout=60)
    wait_until(lambda: not _alive(pid), timeout=10)


def test_ttl_after_finished_removes_the_job(kubectl: Callable[..., Any], namespace: str) -> None:
    manifest = job_manifest("short", "print('bye')", ttlSecondsAfterFinished=1)
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    wait_until(
        lambda: "NotFound" in kubectl("get", "-n", namespace, "job/short", check=False).stderr,
        timeout=60,
    )
    wait_until(lambda: not job_pods(kubectl, namespace, "short"), timeout=60)


def _kill_kubelet() -> None:
    (piece,) = select(["kubelet"])
    proc = supervisor.running(piece)
    assert proc is not None, "the kubelet piece is not running"
    os.kill(proc.pid, signal.SIGKILL)
    wait_until(lambda: supervisor.running(piece) is None, timeout=10, every=0.05)


@pytest.mark.parametrize("finish_while_down", [False, True])
def test_kubelet_killed_mid_pod_recovers(
    kubectl: Callable[..., Any], namespace: str, stack: Any, finish_while_down: bool, tmp_path: Path
) -> None:
    # The container ends when the test says so, not after a time the test must outlast.
    go = tmp_path / "go"
    code = (
        "import os, time; print('start', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('end')"
    )
    name = f"survive-{int(finish_while_down)}"
    kubectl("apply", "-n", namespace, "-f", "-", input=job_manifest(name, code))

    def running_id() -> str | None:
        for pod in job_pods(kubectl, namespace, name):
            for cs in pod["status"].get("containerStatuses") or []:
                if cs["state"].get("running"):
                    return str(cs["containerID"])
        return None

    container_id = wait_until(running_id)
    shim = int(container_id.split("://")[1])  # the container's shim: it records the exit
    _kill_kubelet()
    if finish_while_down:
        go.touch()  # the process ends while no kubelet watches it
        wait_until(lambda: not _alive(shim), timeout=60, every=0.05)
    stack.start("kubelet")
    if not finish_while_down:
        assert _alive(shim), "the container ended before the kubelet came back"
        go.touch()  # ends under the restarted kubelet
    kubectl("wait", "-n", namespace, "--for=condition=Complete", f"job/{name}", "--timeout=60s")
    (pod,) = job_pods(kubectl, namespace, name)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["containerID"] == container_id  # the same process, re-adopted
    assert cs["restartCount"] == 0
    assert cs["state"]["terminated"]["exitCode"] == 0
    assert kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout == "start\nend\n"
