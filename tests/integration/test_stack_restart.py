"""The control plane survives `down` then `up`: etcd's data is kept, Jobs run again.

Named to run after the other integration tests: it restarts the API server they use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stack import supervisor
from stack.registry import select
from tests.helpers import get

pytestmark = pytest.mark.controlplane


def test_controlplane_down_then_up_keeps_state(kubectl: Callable[..., Any], namespace: str) -> None:
    kubectl("create", "configmap", "kept", "-n", namespace, "--from-literal=answer=42")
    pieces = select(["controlplane"])
    stopped = supervisor.down(pieces)
    assert {line.split(":")[0] for line in stopped} >= {"etcd", "kube-apiserver", "kubelet"}
    assert all(supervisor.running(p) is None for p in pieces)
    supervisor.up(pieces)
    assert get(kubectl, "configmap", "kept", "-n", namespace)["data"] == {"answer": "42"}
    kubectl(
        "create", "job", "after-restart", "-n", namespace, "--image=python:3.11",
        "--", "python", "-c", "print('alive')",
    )  # fmt: skip
    kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "job/after-restart", "--timeout=90s"
    )
    assert kubectl("logs", "-n", namespace, "job/after-restart").stdout == "alive\n"
