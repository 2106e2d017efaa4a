"""Fixtures: one local stack per test session, a fresh namespace per test.

The stack is the real thing (see stack/): `stack` brings up whatever is not
running yet and hands out its endpoints. Pieces a test session started are
left running for the next session unless LINEAGE_HUB_STACK_DOWN=1 (`.ci/run`
stops the stack itself when it is done).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from stack import progress, supervisor
from stack.cli import announce_and_build, stack_env
from stack.errors import StackError
from stack.registry import ALL, select

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def pytest_configure(config: pytest.Config) -> None:
    from tests import kafka_client_leaks  # off unless its variable is set

    config.pluginmanager.register(kafka_client_leaks, "kafka-client-leaks")


@dataclass
class StackHandle:
    env: dict[str, str]

    def restart(self, piece_name: str) -> None:
        (piece,) = select([piece_name])
        supervisor.stop(piece)
        supervisor.up([piece])

    def stop(self, piece_name: str) -> None:
        (piece,) = select([piece_name])
        supervisor.stop(piece)

    def start(self, piece_name: str) -> None:
        supervisor.up(select([piece_name]))


def _needed(items: list[pytest.Item]) -> list[str]:
    """The stack groups and pieces the collected tests need, from their markers."""
    marks = {m.name for item in items for m in item.iter_markers()}
    if "e2e" in marks:
        return ["controlplane", "dataplane", "app"]
    needed = []
    if "controlplane" in marks:
        needed.append("controlplane")
    if "dataplane" in marks:
        needed.append("dataplane")
    if "controlplane" in marks:
        needed.append("operator")
    return needed


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[StackHandle]:
    pieces = select(_needed(request.session.items)) or ALL
    # A first run builds for many minutes: its progress goes to the terminal (or CI's
    # log) past pytest's capture; a warm stack tells nothing.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        progress.use(progress.for_stdout())
        try:
            # A cold machine's downloads (Kafka's jars, Jaeger's modules) run while the
            # control plane compiles, as in `stack up`.
            announce_and_build(pieces)
            supervisor.up(pieces)
        finally:
            progress.use(progress.Reporter(None))
    env = stack_env()
    os.environ.update(env)
    yield StackHandle(env)
    if os.environ.get("LINEAGE_HUB_STACK_DOWN") == "1":
        supervisor.down(ALL)


@pytest.fixture(scope="session")
def marquez_up(stack: StackHandle) -> str:
    """Marquez (and its PostgreSQL), or a skip that says exactly why it is missing.

    The Marquez server artifact is not served by every Maven mirror; the build
    step's error names what was asked for and where its log is.
    """
    try:
        supervisor.up(select(["lineage-store"]))
    except StackError as err:
        pytest.skip(f"Marquez is not available on this machine: {err}")
    return stack.env["MARQUEZ_URL"]


@pytest.fixture
def kubectl(stack: StackHandle) -> Kubectl:
    def run(
        *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args],
            env={**os.environ, **stack.env},
            capture_output=True,
            text=True,
            check=check,
            input=input,
            timeout=timeout,
        )

    return run


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    # The serviceaccount controller creates `default`; pods are rejected until it exists.
    # `--for=create` waits for it to appear: a condition on an object not yet there fails
    # at once (NotFound), which a busy controller manager made happen in CI once.
    kubectl(
        "wait",
        "--for=create",
        "serviceaccount/default",
        "-n",
        name,
        "--timeout=30s",
    )
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
