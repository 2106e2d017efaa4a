"""The operator against the real API server, Job controller and process kubelet.

Every run here executes the real stage runner in its Jobs; the operator runs
as its own user with the generated least-privilege ClusterRole.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import yaml

from stack import supervisor
from stack.paths import REPO_ROOT
from stack.registry import select
from tests.helpers import Obj, get, wait_until
from tests.loopback_http import QuietHandler, serving

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())


def manifest(name: str, ns: str, **spec_changes: Any) -> Obj:
    doc: Obj = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{ns}/{name}.parquet"
    doc["spec"].update(spec_changes)
    return doc


def apply(kubectl: Kubectl, doc: Obj) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def run_status(kubectl: Kubectl, ns: str, name: str) -> Obj:
    status: Obj = get(kubectl, "pipelinerun", name, "-n", ns).get("status") or {}
    return status


def wait_phase(kubectl: Kubectl, ns: str, name: str, phase: str, timeout: float = 120) -> Obj:
    def check() -> Obj | None:
        status = run_status(kubectl, ns, name)
        return status if status.get("phase") == phase else None

    result: Obj = wait_until(check, timeout=timeout, every=0.5)
    return result


def jobs_of(kubectl: Kubectl, ns: str, name: str) -> list[Obj]:
    items: list[Obj] = get(kubectl, "jobs", "-n", ns, "-l", f"lineagehub.io/pipelinerun={name}")[
        "items"
    ]
    return items


def condition(status: Obj, kind: str = "Succeeded") -> Obj:
    return next(c for c in status["conditions"] if c["type"] == kind)


@pytest.fixture(scope="module")
def operator(stack: Any) -> None:
    """The operator piece is part of the stack; make sure it is up."""
    supervisor.up(select(["operator"]))


class SlowSource(QuietHandler):
    """A CSV source on loopback that takes its time, for timeout and cancel tests."""

    delay = 30.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        self.reply(200, b"a,b\n1,2\n")


@pytest.fixture(scope="module")
def slow_source() -> Iterator[str]:
    with serving(SlowSource) as served:
        yield f"{served.url}/slow.csv"


def test_happy_path_runs_three_jobs_in_order(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    apply(kubectl, manifest("orders", namespace))
    status = wait_phase(kubectl, namespace, "orders", "Succeeded")
    assert condition(status) | {"lastTransitionTime": None} == {
        "type": "Succeeded",
        "status": "True",
        "reason": "Succeeded",
        "message": "Stages completed: 3/3",
        "observedGeneration": 1,
        "lastTransitionTime": None,
    }
    assert status["progress"] == "3/3"
    assert status["runId"][14] == "7", "runId is a UUIDv7"
    assert status["traceparent"].startswith(f"00-{status['traceId']}-")
    stages = {s["name"]: s for s in status["stages"]}
    assert [stages[s]["phase"] for s in ("extract", "transform", "load")] == ["Succeeded"] * 3
    assert stages["extract"]["recordsOut"] == 51
    assert 0 < stages["load"]["recordsOut"] < 51, "the transform drops nulls, duplicates, cancelled"
    order = ["extract", "transform", "load"]
    jobs = sorted(
        jobs_of(kubectl, namespace, "orders"),
        key=lambda j: order.index(j["metadata"]["labels"]["lineagehub.io/stage"]),
    )
    assert [j["metadata"]["labels"]["lineagehub.io/stage"] for j in jobs] == order
    # (Start times have one-second resolution: two stages can start within one.)
    assert [j["status"]["startTime"] for j in jobs] == sorted(
        j["status"]["startTime"] for j in jobs
    )
    # A stage starts once the previous stage's pod has exited (its Job may be marked
    # Complete a little later: the run does not wait for that).
    pods = get(kubectl, "pods", "-n", namespace, "-l", "lineagehub.io/pipelinerun=orders")
    finished = {
        p["metadata"]["labels"]["lineagehub.io/stage"]: p["status"]["containerStatuses"][0][
            "state"
        ]["terminated"]["finishedAt"]
        for p in pods["items"]
    }
    for earlier, later in itertools.pairwise(jobs):
        stage = earlier["metadata"]["labels"]["lineagehub.io/stage"]
        assert finished[stage] <= later["status"]["startTime"], "stages never overlap"
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == (
            "PipelineRun",
            "orders",
            True,
        )

    # kopf posts a run's Events from a queue of its own, in order, while or after the
    # status is written: the last one (Succeeded) says every earlier one is posted.
    def posted() -> list[str] | None:
        selector = "involvedObject.name=orders"
        events = get(kubectl, "events", "-n", namespace, "--field-selector", selector)
        reasons = [e["reason"] for e in events["items"]]
        return reasons if "Succeeded" in reasons else None

    reasons = wait_until(posted, timeout=60)
    assert reasons.count("StageStarted") == 3
    assert reasons.count("StageSucceeded") == 3


def test_printer_columns(operator: None, kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, manifest("cols", namespace))
    wait_phase(kubectl, namespace, "cols", "Succeeded")

    def consistent() -> tuple[str, Obj] | None:
        """The table and the status read while the operator wrote nothing in between."""
        before = kubectl("get", "pipelineruns", "-n", namespace).stdout
        status = run_status(kubectl, namespace, "cols")
        after = kubectl("get", "pipelineruns", "-n", namespace).stdout

        def without_age(text: str) -> list[str]:
            return [line.rsplit(maxsplit=1)[0] for line in text.splitlines()]

        return (after, status) if without_age(before) == without_age(after) else None

    table, status = wait_until(consistent, timeout=30)
    header, row = table.splitlines()
    columns = "NAME PHASE STAGE PROGRESS RECORDS REASON LINEAGE TRACE RUN-ID AGE"
    assert header.split() == columns.split()
    cells = row.split()
    load = next(s for s in status["stages"] if s["name"] == "load")
    verdicts = {c["type"]: c["status"] for c in status["conditions"]}
    # STAGE is empty once finished, so the row has one cell fewer than the header.
    assert cells[:8] == [
        "cols",
        "Succeeded",
        "3/3",
        str(load["recordsOut"]),
        "Succeeded",
        verdicts.get("LineageRecorded", "<none>"),
        verdicts.get("TraceRecorded", "<none>"),
        status["runId"],
    ]
    by_category = kubectl("get", "lineagehub", "-n", namespace, "-o", "name").stdout
    assert "pipelinerun.lineagehub.io/cols" in by_category
    short = kubectl("get", "plr", "-n", namespace, "-o", "name").stdout.strip()
    assert short == "pipelinerun.lineagehub.io/cols"


def test_failing_stage_fails_the_run_after_its_retries(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    doc = manifest("missing", namespace, stages={"defaults": {"retries": 1}})
    doc["spec"]["source"]["uri"] = "file:///data/examples/no-such-file.csv"
    apply(kubectl, doc)
    status = wait_phase(kubectl, namespace, "missing", "Failed")
    cond = condition(status)
    assert (cond["status"], cond["reason"]) == ("False", "StageFailed")
    assert "no-such-file.csv" in cond["message"]
    extract = next(s for s in status["stages"] if s["name"] == "extract")
    assert extract["phase"] == "Failed"
    assert extract["attempts"] == 2, "one retry, as the spec says"
    assert [
        j["metadata"]["labels"]["lineagehub.io/stage"]
        for j in jobs_of(kubectl, namespace, "missing")
    ] == ["extract"]


def test_quality_check_failure_reason(operator: None, kubectl: Kubectl, namespace: str) -> None:
    doc = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun-quality-fail.yaml").read_text())
    doc["metadata"] = {"name": "quality", "namespace": namespace}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{namespace}/quality.parquet"
    apply(kubectl, doc)
    status = wait_phase(kubectl, namespace, "quality", "Failed")
    cond = condition(status)
    assert cond["reason"] == "QualityCheckFailed"
    assert "amount" in cond["message"]


def test_stage_timeout(operator: None, kubectl: Kubectl, namespace: str, slow_source: str) -> None:
    doc = manifest("slow", namespace, stages={"defaults": {"retries": 0, "timeoutSeconds": 3}})
    doc["spec"]["source"] = {"uri": slow_source, "format": "csv"}
    doc["spec"]["transform"] = {}
    apply(kubectl, doc)
    status = wait_phase(kubectl, namespace, "slow", "Failed", timeout=90)
    assert condition(status)["reason"] == "StageTimeout"


def test_cancel_mid_stage_stops_the_job(
    operator: None, kubectl: Kubectl, namespace: str, slow_source: str
) -> None:
    doc = manifest("cancel", namespace)
    doc["spec"]["source"] = {"uri": slow_source, "format": "csv"}
    doc["spec"]["transform"] = {}
    apply(kubectl, doc)
    wait_until(
        lambda: any(
            (j.get("status") or {}).get("active") for j in jobs_of(kubectl, namespace, "cancel")
        ),
        timeout=60,
    )
    kubectl(
        "patch",
        "pipelinerun",
        "cancel",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )
    status = wait_phase(kubectl, namespace, "cancel", "Cancelled", timeout=30)
    assert condition(status)["reason"] == "Cancelled"
    wait_until(lambda: not jobs_of(kubectl, namespace, "cancel"), timeout=60)
    wait_until(lambda: not get(kubectl, "pods", "-n", namespace)["items"], timeout=60)
    undo = kubectl(
        "patch",
        "pipelinerun",
        "cancel",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"cancel":false}}',
        check=False,
    )
    assert undo.returncode != 0, "a finished run's spec is immutable"


def test_suspend_then_resume(operator: None, kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, manifest("held", namespace, suspend=True))
    wait_until(
        lambda: (
            condition(run_status(kubectl, namespace, "held")).get("reason") == "Suspended"
            if run_status(kubectl, namespace, "held").get("conditions")
            else None
        ),
        timeout=60,
    )
    # Proof that the operator went on deciding while suspended: a spec change (generation 2)
    # it has provably processed (the condition's observedGeneration), and still no Job.
    kubectl(
        "patch",
        "pipelinerun",
        "held",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"ttlSecondsAfterFinished":3600}}',
    )
    seen = wait_until(
        lambda: (
            condition(status)
            if (status := run_status(kubectl, namespace, "held")).get("conditions")
            and condition(status).get("observedGeneration") == 2
            else None
        ),
        timeout=60,
    )
    assert seen["reason"] == "Suspended", seen
    assert jobs_of(kubectl, namespace, "held") == [], "no stage starts while suspended"
    kubectl(
        "patch",
        "pipelinerun",
        "held",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":false}}',
    )
    wait_phase(kubectl, namespace, "held", "Succeeded")


def test_ttl_deletes_the_finished_run(operator: None, kubectl: Kubectl, namespace: str) -> None:
    apply(kubectl, manifest("ttl", namespace, ttlSecondsAfterFinished=2))
    wait_until(
        lambda: not get(kubectl, "pipelineruns", "-n", namespace)["items"], timeout=120, every=0.5
    )
    # The Jobs are garbage-collected with it (wait_until fails the test if they stay).
    wait_until(lambda: not jobs_of(kubectl, namespace, "ttl"), timeout=60)


# The transitions a run goes through; the operator is killed right after each.
KILL_POINTS: list[tuple[str, Callable[[Obj, list[Obj]], bool]]] = [
    ("accepted", lambda st, jobs: bool(st.get("runId"))),
    ("extract created", lambda st, jobs: len(jobs) >= 1),
    ("extract done", lambda st, jobs: st.get("progress") == "1/3"),
    ("transform created", lambda st, jobs: len(jobs) >= 2),
    ("transform done", lambda st, jobs: st.get("progress") == "2/3"),
    ("load created", lambda st, jobs: len(jobs) >= 3),
]


def _reached(kubectl: Kubectl, ns: str, name: str, check: Callable[[Obj, list[Obj]], bool]) -> bool:
    return check(run_status(kubectl, ns, name), jobs_of(kubectl, ns, name))


def test_operator_killed_at_every_transition_loses_and_duplicates_nothing(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    (piece,) = select(["operator"])
    for index, (label, reached) in enumerate(KILL_POINTS):
        name = f"kill-{index}"
        apply(kubectl, manifest(name, namespace))
        wait_until(partial(_reached, kubectl, namespace, name, reached), timeout=120, every=0.05)
        proc = supervisor.running(piece)
        assert proc is not None
        os.killpg(proc.pid, signal.SIGKILL)
        supervisor.stop(piece)
        run_id = run_status(kubectl, namespace, name)["runId"]
        supervisor.up([piece])
        status = wait_phase(kubectl, namespace, name, "Succeeded")
        assert status["runId"] == run_id, f"{label}: the run id survives the restart"
        # The run moves on when a stage's pod has succeeded; its Job's counts follow
        # when the Job controller marks it Complete.
        kubectl(
            "wait",
            "-n",
            namespace,
            "--for=condition=Complete",
            "job",
            "-l",
            f"lineagehub.io/pipelinerun={name}",
            "--timeout=60s",
        )
        jobs = jobs_of(kubectl, namespace, name)
        assert sorted(j["metadata"]["labels"]["lineagehub.io/stage"] for j in jobs) == [
            "extract",
            "load",
            "transform",
        ], label
        for job in jobs:
            assert job["status"].get("succeeded") == 1, (
                f"{label}: {job['metadata']['name']} ran once"
            )
