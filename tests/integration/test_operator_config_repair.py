"""A run's ConfigMap deleted while the run goes on is created again, and the run
succeeds with every stage run once.

The operator creates the ConfigMap once, before the first stage. Here it is deleted
while the extract stage runs (its pod has read its config already): the source is
a loopback server that answers only when the test lets it, so the deletion falls
after the first stage's start and before the second's, on any machine. The transform
pod then cannot build its environment (CreateContainerConfigError); the operator sees
that pod and creates the ConfigMap again, and the kubelet's next try starts it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from stack.paths import REPO_ROOT
from tests.helpers import Obj, get, wait_until
from tests.integration.test_operator import (
    Kubectl,
    apply,
    condition,
    jobs_of,
    manifest,
    wait_phase,
)
from tests.loopback_http import QuietHandler, serving

pytestmark = pytest.mark.controlplane
STAGES = ("extract", "transform", "load")
ORDERS = (REPO_ROOT / "examples" / "data" / "orders.csv").read_bytes()


class GatedSource(QuietHandler):
    """The example orders CSV, sent once the test opens the gate."""

    gate = threading.Event()

    def do_GET(self) -> None:
        self.gate.wait(120)
        self.reply(200, ORDERS)


@pytest.fixture
def gated_source() -> Iterator[tuple[str, threading.Event]]:
    gate = threading.Event()
    handler = type("Gate", (GatedSource,), {"gate": gate})
    with serving(handler) as served:
        try:
            yield f"{served.url}/orders.csv", gate
        finally:
            gate.set()


def _pods(kubectl: Kubectl, ns: str, run: str) -> list[Obj]:
    items: list[Obj] = get(kubectl, "pods", "-n", ns, "-l", f"lineagehub.io/pipelinerun={run}")[
        "items"
    ]
    return items


def _running(kubectl: Kubectl, ns: str, run: str, stage: str) -> bool:
    """The stage's container has started: it has read its environment."""
    return any(
        "running" in (cs.get("state") or {})
        for p in _pods(kubectl, ns, run)
        if p["metadata"]["labels"].get("lineagehub.io/stage") == stage
        for cs in (p.get("status") or {}).get("containerStatuses") or []
    )


def start_held(kubectl: Kubectl, ns: str, run: str, source: str) -> None:
    """Apply run `run` reading the gated `source`; return once its extract stage's
    container runs (waiting for the gate)."""
    doc = manifest(run, ns)
    doc["spec"]["source"] = {"uri": source, "format": "csv"}
    apply(kubectl, doc)
    wait_until(lambda: _running(kubectl, ns, run, "extract"), timeout=90, every=0.2)


def _event_messages(kubectl: Kubectl, ns: str, name: str) -> list[str]:
    events = get(kubectl, "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")
    return [f"{e['reason']}: {e.get('message') or ''}" for e in events["items"]]


def test_config_map_deleted_mid_run_is_created_again(
    operator: None,
    kubectl: Kubectl,
    namespace: str,
    gated_source: tuple[str, threading.Event],
) -> None:
    uri, gate = gated_source
    start_held(kubectl, namespace, "repair", uri)
    kubectl("delete", "configmap", "repair-config", "-n", namespace)
    gate.set()

    status = wait_phase(kubectl, namespace, "repair", "Succeeded", timeout=120)
    assert condition(status)["message"] == "Stages completed: 3/3"
    stages = {s["name"]: s for s in status["stages"]}
    assert [stages[s]["phase"] for s in STAGES] == ["Succeeded"] * 3
    assert stages["extract"]["recordsOut"] == 51

    # Every stage ran once: one Job and one pod each, no container restarted.
    jobs = jobs_of(kubectl, namespace, "repair")
    assert sorted(j["metadata"]["labels"]["lineagehub.io/stage"] for j in jobs) == sorted(STAGES)
    pods = _pods(kubectl, namespace, "repair")
    assert sorted(p["metadata"]["labels"]["lineagehub.io/stage"] for p in pods) == sorted(STAGES)
    assert all(cs["restartCount"] == 0 for p in pods for cs in p["status"]["containerStatuses"]), (
        pods
    )
    assert all(p["status"]["phase"] == "Succeeded" for p in pods)

    # The transform pod did find the ConfigMap gone (the deletion was not too late to
    # matter), and the operator said what it did.
    transform = next(
        p for p in pods if p["metadata"]["labels"]["lineagehub.io/stage"] == "transform"
    )
    pod_events = _event_messages(kubectl, namespace, transform["metadata"]["name"])
    assert any('configmap "repair-config" not found' in m for m in pod_events), pod_events

    # kopf posts the run's Events from a queue of its own, in order, while or after the
    # status is written: the last one (Succeeded) says every earlier one is posted.
    def run_posted() -> list[str] | None:
        messages = _event_messages(kubectl, namespace, "repair")
        return messages if any(m.startswith("Succeeded:") for m in messages) else None

    run_events = wait_until(run_posted, timeout=60)
    assert sum(m.startswith("ConfigMapRecreated:") for m in run_events) == 1, run_events
    assert sum(m.startswith("StageStarted:") for m in run_events) == 3, run_events

    # The new ConfigMap is the run's, as the first was: it goes with the run.
    cm = get(kubectl, "configmap", "repair-config", "-n", namespace)
    owners = cm["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o.get("controller")) for o in owners] == [
        ("PipelineRun", "repair", True)
    ]
