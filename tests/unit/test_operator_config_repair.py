"""Which stage pods tell the operator that their run's ConfigMap is gone."""

from __future__ import annotations

from typing import Any

from lineagehub_operator.config_repair import ConfigWait, waiting_on_config


def _pod(
    reason: str | None,
    message: str = 'configmap "orders-config" not found (env X of stage)',
    *,
    phase: str = "Pending",
    owners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    state = {"waiting": {"reason": reason, "message": message}} if reason else {"running": {}}
    return {
        "metadata": {
            "uid": "pod-1",
            "labels": {"batch.kubernetes.io/controller-uid": "job-label-uid"},
            "ownerReferences": owners
            if owners is not None
            else [{"kind": "Job", "uid": "job-1", "controller": True}],
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "stage", "state": state}]},
    }


def test_a_container_waiting_on_its_config_is_seen_with_its_job_and_message() -> None:
    assert waiting_on_config(_pod("CreateContainerConfigError")) == ConfigWait(
        job_uid="job-1",
        pod_uid="pod-1",
        message='configmap "orders-config" not found (env X of stage)',
    )


def test_the_job_uid_label_stands_in_for_a_missing_owner_reference() -> None:
    wait = waiting_on_config(_pod("CreateContainerConfigError", owners=[]))
    assert wait is not None and wait.job_uid == "job-label-uid"


def test_other_states_are_not_config_waits() -> None:
    assert waiting_on_config(_pod(None)) is None
    assert waiting_on_config(_pod("ContainerCreating")) is None
    assert waiting_on_config(_pod("ImagePullBackOff")) is None
    assert waiting_on_config(_pod("CreateContainerConfigError", phase="Failed")) is None
    assert waiting_on_config({"metadata": {}, "status": {}}) is None


def test_the_message_must_name_the_runs_config_map() -> None:
    missing = ConfigWait("j", "p", 'configmap "orders-config" not found (env X of stage)')
    no_key = ConfigWait("j", "p", "couldn't find key load.json in ConfigMap ns/orders-config")
    assert missing.names("orders-config") and no_key.names("orders-config")
    # Another object's name, or a name ours is only the end or the start of.
    assert not ConfigWait("j", "p", 'secret "orders-config" x').names("orders-conf")
    assert not missing.names("s-config")
    assert not no_key.names("orders-con")
    assert not ConfigWait("j", "p", 'secret "s3-creds" not found').names("orders-config")
