"""The operator observed on the local stack: its Kubernetes calls for a run are spans of
that run's trace (in ClickHouse and Jaeger, children of the run's root span), and its
Prometheus /metrics is served where the stack says."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from lineagehub_operator.run_telemetry import SERVICE
from prometheus_client.parser import text_string_to_metric_families

from stack import ports
from tests.e2e.test_end_to_end import (
    OPERATOR_CALLS,
    apply_example,
    clickhouse_spans,
    jaeger_spans,
    wait_verified,
)
from tests.helpers import Obj, wait_until

pytestmark = pytest.mark.e2e
Kubectl = Callable[..., Any]


def test_the_operators_kube_calls_are_spans_of_the_run(
    stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    apply_example(kubectl, namespace, "kubecalls")
    status = wait_verified(kubectl, namespace, "kubecalls")
    assert status["phase"] == "Succeeded"
    trace_id, root = status["traceId"], status["traceparent"].split("-")[2]

    def calls_stored() -> list[Obj] | None:
        calls = [
            s for s in clickhouse_spans(stack.env, trace_id) if s["SpanName"] in OPERATOR_CALLS
        ]
        names = [s["SpanName"] for s in calls]
        # Batched for up to 5 s after the run's last status write.
        done = names.count("create Job") == 3 and "patch PipelineRun status" in names
        return calls if done else None

    calls = wait_until(calls_stored, timeout=60, every=1.0)
    for span in calls:
        assert span["ServiceName"] == SERVICE, span
        assert span["ParentSpanId"] == root, f"{span['SpanName']} is a child of the run's root"
        assert span["namespace"] == namespace
        assert "client" in str(span["SpanKind"]).lower()
    # Every stage's Job was created once (one span each), and the run's ConfigMap once
    # (not again before each later stage, to be refused with 409): no call was refused.
    names = [s["SpanName"] for s in calls]
    assert names.count("create Job") == 3 and names.count("create ConfigMap") == 1, names
    refused = [s for s in calls if "error" in str(s["StatusCode"]).lower()]
    assert refused == [], refused
    # The stage pods were given no service account token (a stage never calls the API).
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) >= 3
    for pod in pods:
        volumes = [v["name"] for v in pod["spec"].get("volumes", [])]
        assert not [v for v in volumes if v.startswith("kube-api-access")], volumes

    def in_jaeger() -> list[Obj] | None:
        spans = [
            s for s in jaeger_spans(stack.env, trace_id) if s["operationName"] in OPERATOR_CALLS
        ]
        return spans if {s["spanID"] for s in spans} >= {s["SpanId"] for s in calls} else None

    for span in wait_until(in_jaeger, timeout=60, every=1.0):
        parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        assert parents == [root]


def test_the_stacks_operator_serves_its_metrics(stack: Any) -> None:
    reply = httpx.get(f"http://127.0.0.1:{ports.port('operator-metrics')}/metrics", timeout=10)
    assert reply.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    assert families["lineagehub_operator_reconcile_seconds"].type == "histogram"
    assert families["lineagehub_operator_queued_runs"].type == "gauge"
