"""A run whose workspace claim is gone fails at once, saying so, instead of waiting for
its stage's timeout: the scheduler's messages read, the claim's state judged, and the
run's end decided the same on every pass."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from lineagehub_operator.decide import DeleteJob, EmitRunEvent, RecordEvent, workspace_lost
from lineagehub_operator.workspace_loss import (
    ClaimWait,
    claim_gone,
    lost_message,
    waiting_on_claim,
)

from lineagehub.api.pipelinerun import Phase, Reason, StageName
from tests.unit.test_operator_resend import T0, _end_bytes, _run, _until_load

L = StageName.LOAD
#: What kube-scheduler writes on the pod (v1.35), with the claim's name in quotes.
NOT_FOUND = (
    '0/1 nodes are available: persistentvolumeclaim "orders-workspace" not found. '
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
)
BEING_DELETED = (
    '0/1 nodes are available: persistentvolumeclaim "orders-workspace" is being deleted.'
)
LOST_VOLUME = (
    '0/1 nodes are available: persistentvolumeclaim "orders-workspace" bound to '
    'non-existent persistentvolume "pv-1".'
)


def _pod(message: str, phase: str = "Pending", status: str = "False") -> dict[str, Any]:
    return {
        "metadata": {
            "uid": "pod-1",
            "ownerReferences": [{"kind": "Job", "uid": "job-1", "controller": True}],
        },
        "status": {
            "phase": phase,
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": status,
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        },
    }


@pytest.mark.parametrize("message", [NOT_FOUND, BEING_DELETED, LOST_VOLUME])
def test_the_schedulers_word_on_a_claim_is_read(message: str) -> None:
    assert waiting_on_claim(_pod(message)) == ClaimWait(
        job_uid="job-1", pod_uid="pod-1", claim="orders-workspace", message=message
    )


@pytest.mark.parametrize(
    "pod",
    [
        _pod("0/1 nodes are available: 1 Insufficient cpu."),  # another reason
        _pod('pod has unbound immediate PersistentVolumeClaims "orders-workspace"'),
        _pod(NOT_FOUND, phase="Running"),  # placed since
        _pod(NOT_FOUND, status="True"),
        {**_pod(NOT_FOUND), "metadata": {"uid": "pod-1"}},  # not a Job's pod
        {"metadata": {}, "status": {}},
    ],
)
def test_anything_else_is_no_claim_wait(pod: dict[str, Any]) -> None:
    assert waiting_on_claim(pod) is None


def test_the_claims_state_says_whether_it_is_gone() -> None:
    assert claim_gone(None) == "was deleted"
    assert claim_gone({"metadata": {"deletionTimestamp": "2026-12-01T04:00:00Z"}}) == (
        "is being deleted"
    )
    assert claim_gone({"metadata": {}, "status": {"phase": "Lost"}}) == "lost its PersistentVolume"
    # There and bound (or pending, a provisioner still at work): the scheduler's cache
    # lagged, and it will place the pod on its next try.
    assert claim_gone({"metadata": {}, "status": {"phase": "Bound"}}) is None
    assert claim_gone({"metadata": {}, "status": {"phase": "Pending"}}) is None


def test_a_run_whose_workspace_is_lost_fails_at_once_and_the_same_on_every_pass() -> None:
    """Extract and transform ended, load's pod cannot be placed: the run fails with
    WorkspaceLost, load's Job is deleted, and FAIL ends the run when load was started
    (it never ran), so a pass deciding it again (its write lost) sends the same bytes."""
    run = _until_load(_run())
    assert run.status is not None
    load = run.status.stage(L)
    assert load is not None and load.phase == Phase.RUNNING and load.start_time_precise
    message = lost_message("ns", "orders-workspace", "was deleted", "load")
    sends = []
    for later in (T0 + timedelta(seconds=14), T0 + timedelta(minutes=9, microseconds=3)):
        decision = workspace_lost(run, L, message, later)
        assert decision.status.phase == Phase.FAILED
        condition = decision.status.condition()
        assert condition is not None and condition.reason == Reason.WORKSPACE_LOST
        assert condition.message == message
        ended = decision.status.stage(L)
        assert ended is not None and ended.phase == Phase.FAILED
        assert ended.reason == Reason.WORKSPACE_LOST
        assert DeleteJob(L, "orders-load") in decision.actions
        assert [a for a in decision.actions if isinstance(a, EmitRunEvent)] == [
            EmitRunEvent("FAIL")
        ]
        assert RecordEvent("Warning", "WorkspaceLost", message) in decision.actions
        assert decision.status.completion_time_precise == load.start_time_precise
        sends.append(_end_bytes(run, decision, later))
    assert sends[0] == sends[1]
    event = json.loads(sends[0][0])
    assert event["eventType"] == "FAIL"
    transform = run.status.stage(StageName.TRANSFORM)
    assert transform is not None and transform.completion_time_precise is not None
    assert transform.completion_time_precise <= load.start_time_precise


def test_the_message_names_the_claim_what_happened_and_what_to_do() -> None:
    message = lost_message("team-a", "orders-workspace", "is being deleted", "transform")
    assert "team-a/orders-workspace is being deleted" in message
    assert "stage transform cannot start" in message
    assert "start it again from its first stage" in message
