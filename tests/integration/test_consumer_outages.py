"""Outages against poison, on real Kafka with real stores. Here: the consumers' shutdown
against the pod's grace period.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import cast

import pytest
import yaml

from consumers import cli
from consumers.health import Health
from consumers.lineage.consumer import LineageSettings
from consumers.otel.backend import Backend
from consumers.stats import Stats
from stack.pieces.helm import Helm

pytestmark = pytest.mark.dataplane
ROOT = Path(__file__).resolve().parents[2]


# ---- 5. shutdown inside the pod's grace period ------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> Path:
    piece = Helm()
    if not piece.ready():
        piece.build()
    return piece.binary


def test_consumers_finish_their_shutdown_inside_the_pods_grace_period(helm: Path) -> None:
    done = subprocess.run(
        [str(helm), "template", "hub", str(ROOT / "charts" / "lineage-hub"), "-n", "lh"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    pods = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in yaml.safe_load_all(done.stdout)
        if doc and doc["kind"] == "Deployment" and "consume-" in doc["metadata"]["name"]
    }
    assert len(pods) == 2
    # Kubernetes sends SIGTERM, waits terminationGracePeriodSeconds (default 30), then
    # SIGKILL: the in-flight wait plus the final commit, LeaveGroup and the DLQ producer's
    # flush must end before that, or the final commit is cut during an outage.
    budget = cli.SHUTDOWN_TIMEOUT + cli.SHUTDOWN_TAIL
    for name, pod in pods.items():
        assert pod.get("terminationGracePeriodSeconds", 30) > budget, name
    args = cli._parser().parse_args(["otel", "--chdb-path", "/nowhere"])
    batch = cli._batch_consumers(args, cast(Backend, None), Stats("t"), Health())
    assert [c.s.shutdown_timeout for c in batch] == [cli.SHUTDOWN_TIMEOUT] * 2
    assert LineageSettings("kafka", "marquez").shutdown_timeout <= cli.SHUTDOWN_TIMEOUT
