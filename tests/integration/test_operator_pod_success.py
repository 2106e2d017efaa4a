"""A run moves on when a stage's pod has succeeded, not when the Job controller marks its
Job Complete (it syncs a Job a fixed second after its pods' events).

Proven without racing that second: the Job controller (kube-controller-manager) is
stopped while the extract stage's pod waits for its source, so once the pod succeeds
nothing can mark its Job Complete; the operator creates the transform stage's Job all
the same. The controller is started again and the run finishes.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.helpers import Obj, wait_until
from tests.integration.test_operator import Kubectl, jobs_of, wait_phase
from tests.integration.test_operator_config_repair import (  # noqa: F401 (a fixture)
    _pods,
    gated_source,
    start_held,
)

pytestmark = pytest.mark.controlplane
STAGES = ("extract", "transform", "load")
JOB_CONTROLLER = "kube-controller-manager"


def _complete(job: Obj) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def _by_stage(kubectl: Kubectl, ns: str, run: str) -> dict[str, Obj]:
    return {j["metadata"]["labels"]["lineagehub.io/stage"]: j for j in jobs_of(kubectl, ns, run)}


def test_next_stage_job_is_created_before_the_previous_job_is_complete(
    operator: None,
    stack: StackHandle,
    kubectl: Kubectl,
    namespace: str,
    gated_source: tuple[str, threading.Event],  # noqa: F811
) -> None:
    uri, gate = gated_source
    start_held(kubectl, namespace, "orders", uri)
    stack.stop(JOB_CONTROLLER)
    try:
        gate.set()  # the extract pod reads its source and succeeds

        def extract_pod_succeeded() -> bool:
            return any(
                p["metadata"]["labels"].get("lineagehub.io/stage") == "extract"
                and (p.get("status") or {}).get("phase") == "Succeeded"
                for p in _pods(kubectl, namespace, "orders")
            )

        wait_until(extract_pod_succeeded, timeout=90, every=0.2)
        jobs: dict[str, Obj] = wait_until(
            lambda: (found := _by_stage(kubectl, namespace, "orders")).get("transform") and found,
            timeout=90,
            every=0.2,
        )
        # Nothing could have marked it Complete: the operator did not wait for that.
        assert not _complete(jobs["extract"]), jobs["extract"]["status"]
    finally:
        stack.start(JOB_CONTROLLER)

    status = wait_phase(kubectl, namespace, "orders", "Succeeded")
    stages = {s["name"]: s for s in status["stages"]}
    # The result was read from each pod's termination message.
    assert all(stages[s]["phase"] == "Succeeded" for s in STAGES), stages
    assert all(isinstance(stages[s].get("recordsOut"), int) for s in STAGES), stages
    # Each Job still completes, owned by the run as before.
    done: dict[str, Any] = wait_until(
        lambda: (
            (found := _by_stage(kubectl, namespace, "orders"))
            and all(_complete(found.get(s, {})) for s in STAGES)
            and found
        ),
        timeout=60,
        every=0.5,
    )
    owners = {
        (o["kind"], o.get("controller"))
        for job in done.values()
        for o in job["metadata"]["ownerReferences"]
    }
    assert owners == {("PipelineRun", True)}
