"""A second stack beside the session's: its own ports and state, the first untouched.

The second stack is a light subset (etcd, kube-apiserver, Kafka: the control plane's
certificates and kubeconfigs, and a broker's listeners, are what must follow its
ports) started through the `lineage-hub stack` command as a developer would, with
another LINEAGE_HUB_STATE while the session's stack runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.paths import REPO_ROOT
from tests.conftest import StackHandle

pytestmark = [pytest.mark.controlplane, pytest.mark.dataplane]
SUBSET = "etcd,kube-apiserver,kafka"


def stack_cli(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lineage-hub"), "stack", *args],
        env={**os.environ, "LINEAGE_HUB_STATE": str(state)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def env_of(state: Path) -> dict[str, str]:
    out = stack_cli(state, "env").stdout
    pairs = (line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    return {key: value.strip("'") for key, value in pairs}


def status_of(state: Path) -> list[str]:
    done = stack_cli(state, "status")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def assert_aligned(table: list[str]) -> dict[str, dict[str, str]]:
    """Every cell starts at its header's column; returns each piece's cells by header."""
    header = table[0]
    names = header.split()
    starts = [header.index(word) for word in names]
    rows: dict[str, dict[str, str]] = {}
    for row in table[1:]:
        cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        # Each cell starts exactly at its column (a cell may hold a space: `151 MiB`).
        assert all(cells) and all(row[s - 1] == " " != row[s] for s in starts[1:]), row
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


@pytest.fixture
def second_state(stack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("second-stack") / "state"
    yield state
    down = stack_cli(state, "down", timeout=120)
    shutil.rmtree(state, ignore_errors=True)  # frees its ports for the next stack
    assert down.returncode == 0, down.stdout + down.stderr


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args],
        env={**os.environ, "PATH": env["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(900)
def test_a_second_stack_runs_on_its_own_ports_beside_the_first(
    stack: StackHandle, second_state: Path
) -> None:
    first_state = Path(stack.env["LINEAGE_HUB_STATE"])
    up = stack_cli(second_state, "up", f"--only={SUBSET}")
    assert up.returncode == 0, up.stdout + up.stderr

    first = json.loads((first_state / "ports.json").read_text())
    second = json.loads((second_state / "ports.json").read_text())
    assert second["offset"] != first["offset"]
    assert not set(first["ports"].values()) & set(second["ports"].values())
    # The first stack need not be on the default ports (another stack on the machine
    # may hold them): the second then takes whichever set is free, the default one too.
    where = f"ports +{second['offset']}" if second["offset"] else "the default ports"
    assert f"{where} (gateway {second['ports']['gateway']}" in up.stdout

    ours, theirs = env_of(second_state), stack.env
    assert ours["LINEAGE_HUB_STATE"] == str(second_state)
    assert ours["KAFKA_BOOTSTRAP"] == f"127.0.0.1:{second['ports']['kafka']}"
    assert ours["KAFKA_BOOTSTRAP"] != theirs["KAFKA_BOOTSTRAP"]

    # Each kubeconfig reaches its own API server: a namespace made in one is not in the other.
    name = f"only-second-{uuid.uuid4().hex[:8]}"
    made = kubectl(ours, "create", "namespace", name)
    assert made.returncode == 0, made.stderr
    assert "NotFound" in kubectl(theirs, "get", "namespace", name).stderr
    assert kubectl(ours, "get", "namespace", name).returncode == 0
    server = kubectl(ours, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert server.stdout == f"https://127.0.0.1:{second['ports']['kube-apiserver']}"

    rows = assert_aligned(status_of(second_state))
    for piece in SUBSET.split(","):
        assert rows[piece]["STATE"] == "ready", rows[piece]
    kafka_ports = f"{second['ports']['kafka']},{second['ports']['kafka-controller']}"
    assert rows["kafka"]["PORTS"] == kafka_ports
    assert rows["jaeger"]["STATE"] == "down"  # not in the subset, and not the first stack's

    # The session's stack is untouched: same ports, its pieces still ready.
    theirs_rows = assert_aligned(status_of(first_state))
    for piece in SUBSET.split(","):
        assert theirs_rows[piece]["STATE"] == "ready", theirs_rows[piece]
    assert theirs_rows["kafka"]["PORTS"].startswith(f"{first['ports']['kafka']},")
