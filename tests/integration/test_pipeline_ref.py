"""Pipelines on the real API server and operator: admission of the two PipelineRun forms,
a run of a Pipeline with params end to end, its snapshot surviving a Pipeline edit, one
OpenLineage job for every run of a Pipeline, and runs that cannot resolve failing with a
reason that names the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from stack.paths import REPO_ROOT
from stack.pieces import app
from tests.helpers import Obj, get, wait_until

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]
EXAMPLES = REPO_ROOT / "examples"
INLINE = yaml.safe_load((EXAMPLES / "pipelinerun.yaml").read_text())


def pipeline(ns: str, name: str = "orders") -> Obj:
    """The example Pipeline, writing under the test's own output folder."""
    doc: Obj = yaml.safe_load((EXAMPLES / "pipeline.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{ns}/$(params.date).parquet"
    return doc


def ref_run(ns: str, name: str, params: dict[str, str], **spec: Any) -> Obj:
    return {
        "apiVersion": "lineagehub.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"pipelineRef": {"name": "orders"}, "params": params, **spec},
    }


def apply(kubectl: Kubectl, doc: Obj, *flags: str) -> Any:
    return kubectl("apply", *flags, "-f", "-", input=json.dumps(doc), check=False)


def status_of(kubectl: Kubectl, ns: str, name: str) -> Obj:
    found: Obj = get(kubectl, "pipelinerun", name, "-n", ns).get("status") or {}
    return found


def wait_status(kubectl: Kubectl, ns: str, name: str, check: Callable[[Obj], bool]) -> Obj:
    def ready() -> Obj | None:
        status = status_of(kubectl, ns, name)
        return status if check(status) else None

    found: Obj = wait_until(ready, timeout=120, every=0.5)
    return found


def succeeded(status: Obj) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == "Succeeded")


# --------------------------------------------------------------------------- admission

REJECTED: list[tuple[str, Obj, str]] = [
    (
        "pipelineRef and an inline spec",
        {"pipelineRef": {"name": "orders"}, "source": INLINE["spec"]["source"]},
        "spec.pipelineRef: Invalid value",
    ),
    (
        "neither pipelineRef nor an inline spec",
        {"suspend": True},
        "spec.source: Invalid value: an inline spec needs source; or set pipelineRef",
    ),
    ("an inline spec without a sink", {"source": INLINE["spec"]["source"]}, "spec.sink"),
    (
        "pipelineRef with a transform",
        {"pipelineRef": {"name": "orders"}, "transform": {"filter": "true"}},
        "from its Pipeline",
    ),
    (
        "params on an inline run",
        {**INLINE["spec"], "params": {"date": "2026-11-30"}},
        "params apply only to a run with pipelineRef",
    ),
    ("pipelineRef without a name", {"pipelineRef": {}}, "spec.pipelineRef.name"),
]


@pytest.mark.parametrize(("case", "spec", "words"), REJECTED, ids=[c[0] for c in REJECTED])
def test_the_api_server_admits_exactly_one_form(
    kubectl: Kubectl, namespace: str, case: str, spec: Obj, words: str
) -> None:
    doc = {**copy.deepcopy(INLINE), "metadata": {"name": "x", "namespace": namespace}}
    doc["spec"] = spec
    result = apply(kubectl, doc, "--dry-run=server")
    assert result.returncode != 0, f"{case}: accepted"
    assert words in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("kind", "default"), [("integer", "ten"), ("boolean", "yes"), ("date", "30.11.2026")]
)
def test_a_default_of_the_wrong_type_is_rejected(
    kubectl: Kubectl, namespace: str, kind: str, default: str
) -> None:
    doc = pipeline(namespace)
    doc["spec"]["params"].append({"name": "extra", "type": kind, "default": default})
    result = apply(kubectl, doc, "--dry-run=server")
    assert result.returncode != 0
    assert "spec.params[3].default" in result.stderr, result.stderr
    assert f"for a {kind} parameter" in result.stderr


def test_the_examples_apply_and_list(kubectl: Kubectl, namespace: str) -> None:
    for example in ("pipeline.yaml", "pipelinerun-ref.yaml"):
        result = kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES / example)
        )
        assert "created (server dry run)" in result.stdout
    apply(kubectl, pipeline(namespace))
    names = kubectl("get", "pipelines", "-n", namespace, "-o", "name").stdout.split()
    assert names == ["pipeline.lineagehub.io/orders"]
    short = kubectl("get", "pl", "-n", namespace, "-o", "name").stdout.split()
    assert short == names


# --------------------------------------------------------------------------- operator


def test_a_run_of_a_pipeline_runs_its_snapshot_as_the_pipelines_job(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    assert apply(kubectl, pipeline(namespace)).returncode == 0
    # Suspended: it resolves the Pipeline, then waits before its first stage.
    first = ref_run(namespace, "first", {"date": "2026-11-30", "maxAmount": "100"}, suspend=True)
    assert apply(kubectl, first).returncode == 0
    snapshot = wait_status(kubectl, namespace, "first", lambda s: "runId" in s)["pipelineSpec"]
    assert snapshot["sink"]["uri"] == f"file:///data/output/{namespace}/2026-11-30.parquet"
    assert snapshot["source"]["uri"] == "file:///data/examples/orders.csv"
    assert "amount <= 100" in snapshot["transform"]["filter"]
    assert snapshot["openlineage"] == {"namespace": "lineage-hub-examples", "job": "orders"}

    # The Pipeline changes after the run started: the run keeps what it resolved.
    edited = pipeline(namespace)
    edited["spec"]["sink"]["uri"] = f"file:///data/output/{namespace}/edited.parquet"
    assert apply(kubectl, edited).returncode == 0
    patch = json.dumps({"spec": {"suspend": False}})
    kubectl("patch", "pipelinerun", "first", "-n", namespace, "--type=merge", "-p", patch)
    done = wait_status(kubectl, namespace, "first", lambda s: s.get("phase") == "Succeeded")
    assert done["pipelineSpec"] == snapshot
    output = app.data_volume() / "output" / namespace
    table = pq.read_table(output / "2026-11-30.parquet")
    assert table.num_rows > 0
    assert max(table.column("amount").to_pylist()) <= 100
    assert not (output / "edited.parquet").exists()

    # A second run of the same Pipeline, the edited one now: same OpenLineage job.
    assert apply(kubectl, ref_run(namespace, "second", {"date": "2026-12-01"})).returncode == 0
    second = wait_status(kubectl, namespace, "second", lambda s: s.get("phase") == "Succeeded")
    assert second["pipelineSpec"]["sink"]["uri"].endswith("/edited.parquet")
    assert (output / "edited.parquet").is_file()
    for run in ("first", "second"):
        config = get(kubectl, "configmap", f"{run}-config", "-n", namespace)["data"]
        extract = json.loads(config["extract.json"])
        assert extract["openlineageJob"] == "orders.extract"
        assert extract["parent"]["job"] == "orders"
        assert extract["parent"]["namespace"] == "lineage-hub-examples"


@pytest.mark.parametrize(
    ("params", "ref", "reason", "words"),
    [
        ({"date": "2026-11-30"}, "nope", "PipelineNotFound", ["spec.pipelineRef.name", "nope"]),
        ({}, "orders", "InvalidParams", ["spec.params.date", "requires parameter date"]),
        ({"date": "monday"}, "orders", "InvalidParams", ["spec.params.date", "YYYY-MM-DD"]),
        ({"date": "2026-11-30", "dat": "x"}, "orders", "InvalidParams", ["spec.params.dat"]),
    ],
    ids=["no such pipeline", "missing param", "wrong type", "unknown param"],
)
def test_a_run_that_cannot_resolve_fails_naming_the_field(
    operator: None,
    kubectl: Kubectl,
    namespace: str,
    params: dict[str, str],
    ref: str,
    reason: str,
    words: list[str],
) -> None:
    assert apply(kubectl, pipeline(namespace)).returncode == 0
    doc = ref_run(namespace, "bad", params)
    doc["spec"]["pipelineRef"]["name"] = ref
    assert apply(kubectl, doc).returncode == 0
    status = wait_status(kubectl, namespace, "bad", lambda s: s.get("phase") == "Failed")
    cond = succeeded(status)
    assert (cond["status"], cond["reason"]) == ("False", reason)
    for word in words:
        assert word in cond["message"]
    assert "pipelineSpec" not in status
    jobs = get(kubectl, "jobs", "-n", namespace)["items"]
    assert jobs == [], "nothing ran"

    def posted() -> list[str] | None:
        # kopf posts Events from one queue of its own, after the status write; on a shared
        # stack it can be held up by retries of other tests' Events (namespaces going).
        selector = "involvedObject.name=bad"
        events = get(kubectl, "events", "-n", namespace, "--field-selector", selector)
        reasons = [e["reason"] for e in events["items"]]
        return reasons if reason in reasons else None

    assert reason in wait_until(posted, timeout=150, every=1)
