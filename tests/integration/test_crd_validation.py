"""The generated CRD on the real API server: bad specs are rejected, naming the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from stack.paths import REPO_ROOT
from tests.helpers import wait_until

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())


def with_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """The example with dotted-path edits to its spec (None deletes)."""
    doc: dict[str, Any] = copy.deepcopy(EXAMPLE)
    for path, value in changes.items():
        node: Any = doc["spec"]
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        key: Any = int(last) if last.isdigit() else last
        if value is None:
            del node[key]
        else:
            node[key] = value
    return doc


# (case, spec edits, text the API server's message must contain)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "sink equals source",
        {"sink.uri": "file:///data/examples/orders.csv", "sink.format": "csv"},
        "sink.uri",
    ),
    ("clickhouse format on a file uri", {"sink.format": "clickhouse"}, "spec.sink"),
    ("clickhouse uri with parquet format", {"sink.uri": "clickhouse://ch:9000/db.t"}, "spec.sink"),
    ("s3 options on a file source", {"source.s3": {"region": "x"}}, "spec.source"),
    ("range with min above max", {"transform.quality.2.min": 50000}, "spec.transform.quality[2]"),
    (
        "range without bounds",
        {"transform.quality.2": {"type": "range", "column": "amount"}},
        "spec.transform.quality[2]",
    ),
    ("min on a not_null check", {"transform.quality.0.min": 1}, "spec.transform.quality[0]"),
    (
        "accepted_values without values",
        {"transform.quality.3.values": None},
        "spec.transform.quality[3]",
    ),
    (
        "values on a not_null check",
        {"transform.quality.0.values": ["a"]},
        "spec.transform.quality[0]",
    ),
    ("regex without a pattern", {"transform.quality.4.pattern": None}, "spec.transform.quality[4]"),
    (
        "two columns renamed to one",
        {"transform.rename": {"a": "x", "b": "x"}},
        "spec.transform.rename",
    ),
    ("unsupported source scheme", {"source.uri": "ftp://host/orders.csv"}, "spec.source.uri"),
    ("unknown cast type", {"transform.cast": {"amount": "money"}}, "spec.transform.cast.amount"),
    (
        "unknown severity",
        {"transform.quality.0.severity": "error"},
        "spec.transform.quality[0].severity",
    ),
    ("too many retries", {"stages.load": {"retries": 99}}, "spec.stages.load.retries"),
    (
        "duplicate derived names",
        {"transform.derived": [{"name": "g", "expr": "1"}, {"name": "g", "expr": "2"}]},
        "spec.transform.derived",
    ),
    ("duplicate select columns", {"transform.select": ["a", "a"]}, "spec.transform.select"),
    (
        "duplicate dropNulls columns",
        {"transform.dropNulls": ["a", "a"]},
        "spec.transform.dropNulls",
    ),
    (
        "bad resource quantity",
        {"resources": {"limits": {"memory": "lots"}}},
        "spec.resources.limits.memory",
    ),
    ("unknown source format", {"source.format": "xlsx"}, "spec.source.format"),
    ("unknown sink mode", {"sink.mode": "upsert"}, "spec.sink.mode"),
    ("missing source", {"source": None}, "spec.source"),
    ("missing sink uri", {"sink.uri": None}, "spec.sink.uri"),
    ("negative ttl", {"ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
    ("zero timeout", {"stages.defaults.timeoutSeconds": 0}, "spec.stages.defaults.timeoutSeconds"),
    (
        "derived name not an identifier",
        {"transform.derived": [{"name": "gross amount", "expr": "1"}]},
        "spec.transform.derived[0].name",
    ),
    ("unknown spec field", {"parallelism": 3}, "parallelism"),
]


@pytest.mark.parametrize(("case", "changes", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_rejected_naming_the_field(
    kubectl: Kubectl, namespace: str, case: str, changes: dict[str, Any], field: str
) -> None:
    doc = with_changes(changes)
    result = kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(doc),
        check=False,
    )
    assert result.returncode != 0, f"{case}: accepted by the API server"
    assert field in result.stderr, f"{case}: message does not name {field!r}: {result.stderr}"


@pytest.mark.parametrize(
    "example", ["pipelinerun.yaml", "pipelinerun-quality-fail.yaml", "pipelinerun-cancelled.yaml"]
)
def test_examples_apply_cleanly(kubectl: Kubectl, namespace: str, example: str) -> None:
    result = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(REPO_ROOT / "examples" / example)
    )
    assert "created (server dry run)" in result.stdout


def test_explain_documents_every_transform_field(kubectl: Kubectl) -> None:
    text = kubectl("explain", "pipelinerun.spec.transform", "--recursive=false").stdout
    for field in (
        "rename",
        "cast",
        "derived",
        "filter",
        "dropNulls",
        "deduplicate",
        "select",
        "quality",
    ):
        assert f"  {field}\t" in text or f"  {field} " in text, field
    assert "fixed order" in text


def test_source_transform_sink_frozen_once_running(kubectl: Kubectl, namespace: str) -> None:
    doc = with_changes({"suspend": True})
    doc["metadata"] = {"name": "frozen", "namespace": namespace}
    kubectl("apply", "-f", "-", input=json.dumps(doc))

    def suspended_by_the_operator() -> bool:
        got = json.loads(
            kubectl("get", "pipelinerun", "frozen", "-n", namespace, "-o", "json").stdout
        )
        conditions = (got.get("status") or {}).get("conditions") or []
        return any(c.get("reason") == "Suspended" for c in conditions)

    # The stack's operator writes the run's first status (phase Pending) as it suspends it;
    # a Running set before that write would be overwritten by it and the edit let through.
    wait_until(suspended_by_the_operator, timeout=60)
    kubectl(
        "patch",
        "pipelinerun",
        "frozen",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Running"}}),
    )
    edit = kubectl(
        "patch",
        "pipelinerun",
        "frozen",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"source": {"uri": "file:///data/examples/other.csv"}}}),
        check=False,
    )
    assert edit.returncode != 0
    assert "cannot change once the run has started" in edit.stderr
    allowed = kubectl(
        "patch",
        "pipelinerun",
        "frozen",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )
    assert allowed.returncode == 0
