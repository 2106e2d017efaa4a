"""An operator restart finds a run that ended but whose stores have not all answered:
its daemon asks the stores at once, then at the pace of the run's age (half the time
since the run ended), not every half second again as for a run that has just ended.

The operator here is one of the test's own, scoped to the test's namespace, whose
trace and lineage stores are a stand-in on loopback that records each request and
never holds the run (so the run stays unverified); the stack's operator is stopped
meanwhile and started again at the end. The run itself runs for real.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import pytest

from stack import supervisor
from stack.registry import select
from tests.helpers import wait_until
from tests.integration.test_operator import Kubectl, apply, manifest, run_status, wait_phase
from tests.loopback_http import QuietHandler, serving
from tests.operator_process import operator_process

pytestmark = pytest.mark.controlplane


class Stores(QuietHandler):
    """The trace and lineage stores of the test's operator: every GET is recorded (its
    wall-clock time and path) and answered 404, "no such run yet"."""

    seen: list[tuple[float, str]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.seen.append((time.time(), self.path))
        self.reply(404)


@pytest.fixture
def stores() -> Iterator[str]:
    Stores.seen = []
    with serving(Stores) as served:
        yield served.url


def checks_of(trace_id: str) -> list[float]:
    """When the operator asked the trace store about the trace: one request a check."""
    with Stores.lock:
        return [at for at, path in Stores.seen if path == f"/api/v1/traces/{trace_id}"]


def own_operator(
    namespace: str, stores: str, log: Path
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The operator for the test's namespace alone, its trace and lineage stores the
    stand-in (no Marquez, no Jaeger), its verify deadline far off."""
    settings = {
        "LINEAGEHUB_TRACE_STORE_URL": stores,
        "LINEAGEHUB_LINEAGE_STORE_URL": stores,
        "MARQUEZ_URL": "",
        "JAEGER_QUERY_URL": "",
        "LINEAGEHUB_VERIFY_TIMEOUT_SECONDS": "600",
    }
    return operator_process([namespace], log, settings)


@pytest.fixture
def stack_operator_stopped(stack: object) -> Iterator[None]:
    """No other operator handles the test's run meanwhile; the stack's is back after."""
    (piece,) = select(["operator"])
    supervisor.stop(piece)
    try:
        yield
    finally:
        supervisor.up([piece])


def _precise(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_after_a_restart_an_old_unverified_run_is_checked_at_its_ages_pace(
    stack_operator_stopped: None,
    kubectl: Kubectl,
    namespace: str,
    stores: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "operator.log"
    with own_operator(namespace, stores, log):
        apply(kubectl, manifest("aging", namespace))
        status = wait_phase(kubectl, namespace, "aging", "Succeeded")
        trace_id, ended = status["traceId"], _precise(status["completionTimePrecise"])
        # Checked from a second after the end (its end's status said Waiting), every
        # half second while the records are due, then less often: 1, 1.5 .. 4, 6, 9 s.
        before = wait_until(lambda: (c := checks_of(trace_id)) and c[-1] - ended >= 8.5 and c)
        assert before[0] - ended >= 0.9, ("no check at the end itself", before[0] - ended)
        conditions = {c["type"]: c for c in run_status(kubectl, namespace, "aging")["conditions"]}
        assert conditions["TraceRecorded"]["status"] == "Unknown", conditions
    restarted = len(checks_of(trace_id))  # the killed operator's

    with own_operator(namespace, stores, log):
        after = wait_until(lambda: (c := checks_of(trace_id)[restarted:]) and len(c) >= 2 and c)
    age = after[0] - ended
    assert age >= 9, age
    # The first check comes at once; the next when the run's age has grown by half
    # (not 1 s later, as for a run that has just ended).
    assert after[1] - after[0] >= age / 2 - 0.1, (age, after[1] - after[0])
