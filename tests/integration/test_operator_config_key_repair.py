"""A run's ConfigMap that lost a stage's key while the run goes on is made whole again:
the stage's pod cannot build its environment (the kubelet's CreateContainerConfigError
names the key and the ConfigMap), the operator puts the run's keys back in the
ConfigMap there, and the kubelet's next try starts the stage. (Created again when it
is gone altogether: test_operator_config_repair.py.)"""

from __future__ import annotations

import json
import threading

import pytest

from tests.helpers import get, wait_until
from tests.integration.test_operator import Kubectl, condition, wait_phase
from tests.integration.test_operator_config_repair import (
    STAGES,
    gated_source,  # noqa: F401 - a fixture
    start_held,
)

pytestmark = pytest.mark.controlplane


def test_a_key_removed_from_the_config_map_mid_run_is_put_back(
    operator: None,
    kubectl: Kubectl,
    namespace: str,
    gated_source: tuple[str, threading.Event],  # noqa: F811 - the fixture imported above
) -> None:
    uri, gate = gated_source
    start_held(kubectl, namespace, "keyed", uri)
    before = get(kubectl, "configmap", "keyed-config", "-n", namespace)["data"]
    remove = [{"op": "remove", "path": "/data/transform.json"}]
    kubectl(
        "patch",
        "configmap",
        "keyed-config",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(remove),
    )
    gate.set()

    status = wait_phase(kubectl, namespace, "keyed", "Succeeded", timeout=120)
    assert condition(status)["message"] == "Stages completed: 3/3"
    assert [s["phase"] for s in status["stages"]] == ["Succeeded"] * len(STAGES)
    assert get(kubectl, "configmap", "keyed-config", "-n", namespace)["data"] == before

    # The transform pod did find the key missing, and the operator said what it did.
    def said() -> list[str] | None:
        events = get(kubectl, "events", "-n", namespace)["items"]
        messages = [f"{e['reason']}: {e.get('message') or ''}" for e in events]
        done = any(m.startswith("Succeeded:") for m in messages)
        return messages if done else None

    messages = wait_until(said, timeout=60)
    assert any("couldn't find key transform.json" in m for m in messages), messages
    assert sum(m.startswith("ConfigMapRecreated:") for m in messages) == 1, messages
