"""The whole flow on the local stack: operator, stage Jobs, Kafka, consumers, stores.

A PipelineRun is applied with kubectl; its stages run as Jobs through the real
Job controller; their spans go to Kafka, from there to ClickHouse (the otel
consumer) and Jaeger (its Kafka receiver); the operator checks the stores and
writes the verdicts back onto the run.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from stack import supervisor
from stack.paths import REPO_ROOT
from stack.registry import select
from tests.helpers import Obj, get, wait_until

pytestmark = pytest.mark.e2e
Kubectl = Callable[..., Any]
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
STAGE_SPANS = {"stage extract", "stage transform", "stage load"}


def apply_example(kubectl: Kubectl, ns: str, name: str, source: str = "pipelinerun.yaml") -> None:
    doc: Obj = copy.deepcopy(yaml.safe_load((REPO_ROOT / "examples" / source).read_text()))
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{ns}/{name}.parquet"
    doc["spec"]["openlineage"] = {"namespace": ns, "job": name}
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def status_of(kubectl: Kubectl, ns: str, name: str) -> Obj:
    status: Obj = get(kubectl, "pipelinerun", name, "-n", ns).get("status") or {}
    return status


def verdict(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


def wait_verified(kubectl: Kubectl, ns: str, name: str, timeout: float = 180) -> Obj:
    """Until the run finished and both LineageRecorded and TraceRecorded reached a verdict."""

    def check() -> Obj | None:
        status = status_of(kubectl, ns, name)
        verdicts = [verdict(status, k) for k in ("TraceRecorded", "LineageRecorded")]
        done = all(v is not None and v["status"] != "Unknown" for v in verdicts)
        return status if done else None

    result: Obj = wait_until(check, timeout=timeout, every=1.0)
    return result


def jaeger_spans(env: dict[str, str], trace_id: str) -> list[Obj]:
    reply = httpx.get(f"{env['JAEGER_QUERY_URL']}/api/traces/{trace_id}", timeout=10)
    reply.raise_for_status()
    spans: list[Obj] = reply.json()["data"][0]["spans"]
    return spans


#: The spans the operator makes of its Kubernetes calls for a run (kube_tracing), batched
#: after the run's own: not yet all stored when the run's verdict counted its spans.
OPERATOR_CALLS = frozenset(
    {
        "create Job",
        "create ConfigMap",
        "create PersistentVolumeClaim",
        "patch PipelineRun status",
        "list Pods",
    }
)


def clickhouse_spans(env: dict[str, str], trace_id: str) -> list[Obj]:
    """A trace's spans in the stack's ClickHouse (the otel consumer's SQL endpoint)."""
    query = (
        "SELECT SpanId, ParentSpanId, SpanName, ServiceName, SpanKind, StatusCode, "
        "SpanAttributes['k8s.namespace.name'] AS namespace, "
        "SpanAttributes['http.response.status_code'] AS http_status "
        f"FROM otel.otel_traces WHERE TraceId = '{trace_id}'"
    )
    reply = httpx.post(
        env["CLICKHOUSE_HTTP_URL"],
        params={"default_format": "JSONEachRow"},
        content=query.encode(),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return [json.loads(line) for line in reply.text.splitlines() if line.strip()]


def own_spans(env: dict[str, str], trace_id: str) -> int:
    """The run's own spans in ClickHouse: the trace without the operator's call spans."""
    return sum(1 for s in clickhouse_spans(env, trace_id) if s["SpanName"] not in OPERATOR_CALLS)


def test_run_is_one_trace_in_clickhouse_and_jaeger(
    stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    apply_example(kubectl, namespace, "orders")
    status = wait_verified(kubectl, namespace, "orders")
    assert status["phase"] == "Succeeded"
    trace = verdict(status, "TraceRecorded")
    assert trace is not None and (trace["status"], trace["reason"]) == ("True", "Recorded"), trace
    assert status["trace"]["traceId"] == status["traceId"]
    assert status["trace"]["allStageSpans"] is True
    # Root + 3 stage spans + read/transform/validate/write children.
    assert status["trace"]["spanCount"] >= 10

    def same_in_both() -> list[Obj] | None:
        spans = jaeger_spans(stack.env, status["traceId"])
        stored = clickhouse_spans(stack.env, status["traceId"])
        return spans if {s["spanID"] for s in spans} == {s["SpanId"] for s in stored} else None

    spans = wait_until(same_in_both, timeout=60, every=1.0)  # "ClickHouse and Jaeger agree"
    by_id = {s["spanID"]: s for s in spans}
    root_span_id = status["traceparent"].split("-")[2]
    root = by_id[root_span_id]
    assert root["operationName"] == "PipelineRun orders"
    stages = [s for s in spans if s["operationName"] in STAGE_SPANS]
    assert {s["operationName"] for s in stages} == STAGE_SPANS
    for span in stages:
        parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        assert parents == [root_span_id], (
            f"{span['operationName']} is a child of the run's root span"
        )
    children = [
        s for s in spans if s["operationName"] in {"read", "transform", "validate", "write"}
    ]
    stage_ids = {s["spanID"] for s in stages}
    assert children and all(c["references"][0]["spanID"] in stage_ids for c in children)
    lineage = verdict(status, "LineageRecorded")
    assert lineage is not None and (lineage["status"], lineage["reason"]) == ("True", "Recorded")
    assert "ClickHouse" in lineage["message"]
    assert status["lineage"]["runId"] == status["runId"]
    assert status["lineage"]["inClickhouse"] is True
    assert "ClickHouse" in status["lineage"]["stores"]
    assert status["lineage"]["columnLineage"] is True
    assert status["lineage"]["outputs"][0]["name"] == f"/data/output/{namespace}/orders.parquet"


def lineage_api(stack: Any, path: str, **params: Any) -> Obj:
    """The gateway's lineage API (the real app, in process) over the stack's warehouse."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.auth import parse_tokens
    from gateway.config import Settings

    token = "e2e-reader-token-0123456789"
    settings = Settings(
        tokens=parse_tokens(f"{token}:lineage:read"),
        clickhouse_http_url=stack.env["CLICKHOUSE_HTTP_URL"],
    )
    app = create_app(settings, publisher=None, runs=None)
    with TestClient(app) as client:
        reply = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    body: Obj = reply.json()
    return body


def test_lineage_graph_and_column_lineage_read_back_through_the_api(
    stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    apply_example(kubectl, namespace, "graph")
    status = wait_verified(kubectl, namespace, "graph")
    assert status["phase"] == "Succeeded"
    assert verdict(status, "LineageRecorded")["status"] == "True"  # type: ignore[index]
    sink = f"dataset:file:/data/output/{namespace}/graph.parquet"
    source = "dataset:file:/data/examples/orders.csv"
    graph = lineage_api(stack, "/api/v1/lineage", nodeId=sink, upstreamDepth=5, downstreamDepth=0)
    ids = {n["id"] for n in graph["graph"]}
    stage_jobs = {f"job:{namespace}:graph.{s}" for s in ("extract", "transform", "load")}
    assert source in ids and stage_jobs <= ids, ids
    load = next(n for n in graph["graph"] if n["id"] == f"job:{namespace}:graph.load")
    assert load["data"]["latestRun"]["state"] == "COMPLETE"
    assert [e["destination"] for e in load["outEdges"]] == [sink]
    # Column lineage: every output field of the sink has an upstream field.
    columns = lineage_api(stack, "/api/v1/column-lineage", nodeId=sink, depth=1)
    assert columns["edges"] and all(
        e["destination"].startswith(f"datasetField:file:/data/output/{namespace}/graph.parquet:")
        for e in columns["edges"]
        if e["destination"].startswith(f"datasetField:file:/data/output/{namespace}/")
    )
    assert any(t["type"] for e in columns["edges"] for t in e.get("transformations") or [])
    # The run, its stages as children, each with its trace.
    run = lineage_api(stack, f"/api/v1/lineage/runs/{status['runId']}")
    assert run["state"] == "COMPLETE"
    assert [c["job"] for c in run["children"]] == sorted(
        stage_jobs, key=lambda j: ["extract", "transform", "load"].index(j.rsplit(".", 1)[1])
    )
    assert run["traceId"] == status["traceId"]
    history = lineage_api(
        stack, "/api/v1/lineage/job", namespace=namespace, name="graph.load", limit=5
    )
    assert history["runs"][0]["state"] == "COMPLETE"
    assert history["runs"][0]["rowsOutput"] == status["stages"][2]["recordsOut"]


def test_failed_quality_check_is_a_failed_span(
    stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    apply_example(kubectl, namespace, "badq", "pipelinerun-quality-fail.yaml")
    status = wait_verified(kubectl, namespace, "badq")
    assert status["phase"] == "Failed"
    assert verdict(status, "Succeeded")["reason"] == "QualityCheckFailed"  # type: ignore[index]
    spans = {s["operationName"]: s for s in jaeger_spans(stack.env, status["traceId"])}
    tags = {t["key"]: t["value"] for t in spans["stage transform"]["tags"]}
    assert tags.get("otel.status_code") == "ERROR" or tags.get("error") is True
    root_tags = {t["key"]: t["value"] for t in spans["PipelineRun badq"]["tags"]}
    assert root_tags.get("otel.status_code") == "ERROR" or root_tags.get("error") is True
    assert "stage load" not in spans, "load never ran"
    assert verdict(status, "LineageRecorded")["status"] == "True"  # type: ignore[index]
    history = lineage_api(
        stack, "/api/v1/lineage/job", namespace=namespace, name="badq.transform", limit=5
    )
    assert [r["state"] for r in history["runs"]] == ["FAIL"]
    assert history["runs"][0]["errorMessage"]
    run = lineage_api(stack, f"/api/v1/lineage/runs/{status['runId']}")
    assert run["state"] == "FAIL"


def test_ten_runs_at_once(stack: Any, kubectl: Kubectl, namespace: str) -> None:
    names = [f"many-{i}" for i in range(10)]
    for name in names:
        apply_example(kubectl, namespace, name)

    def all_done() -> bool:
        items = get(kubectl, "pipelineruns", "-n", namespace)["items"]
        return len(items) == 10 and all(
            (i.get("status") or {}).get("phase") == "Succeeded" for i in items
        )

    wait_until(all_done, timeout=400, every=2.0)
    items = get(kubectl, "pipelineruns", "-n", namespace)["items"]
    assert len({i["status"]["traceId"] for i in items}) == 10
    assert len({i["status"]["runId"] for i in items}) == 10
    jobs = get(kubectl, "jobs", "-n", namespace)["items"]
    assert len(jobs) == 30, "exactly three Jobs per run"

    # A run moves on when a stage's pod has succeeded; the Job controller marks the Job
    # a moment later (its sync is batched), so the last Jobs may still be settling.
    def every_job_succeeded_once() -> bool:
        jobs = get(kubectl, "jobs", "-n", namespace)["items"]
        assert len(jobs) == 30, "no Job created or lost after the runs finished"
        return all(j["status"].get("succeeded") == 1 for j in jobs)

    wait_until(every_job_succeeded_once, timeout=60, every=1.0)


def test_consumer_restart_mid_run_loses_and_duplicates_nothing(
    stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    apply_example(kubectl, namespace, "steady")
    baseline = wait_verified(kubectl, namespace, "steady")
    apply_example(kubectl, namespace, "bumpy")
    wait_until(lambda: status_of(kubectl, namespace, "bumpy").get("progress") == "1/3", timeout=120)
    (consumer,) = select(["consume-otel"])
    supervisor.stop(consumer)
    supervisor.up([consumer])
    status = wait_verified(kubectl, namespace, "bumpy")
    assert verdict(status, "TraceRecorded")["status"] == "True"  # type: ignore[index]
    assert own_spans(stack.env, status["traceId"]) == own_spans(stack.env, baseline["traceId"]), (
        "no span lost or doubled"
    )


def test_a_run_created_over_http_continues_the_callers_trace(
    stack: Any, kubectl: Kubectl, namespace: str
) -> None:
    """POST /api/v1/pipeline/run with a W3C traceparent: the gateway's request span is the
    caller's child, the run's root span is the gateway span's child, and the stages hang
    below it: one trace from the HTTP call to the last stage, in ClickHouse and Jaeger."""
    from pathlib import Path

    # A fresh trace each time: Jaeger keeps every earlier run's spans under a reused id.
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    doc: Obj = copy.deepcopy(EXAMPLE)
    spec = doc["spec"]
    spec["sink"]["uri"] = f"file:///data/output/{namespace}/traced.parquet"
    spec["openlineage"] = {"namespace": namespace, "job": "traced"}
    token = Path(stack.env["LINEAGEHUB_GATEWAY_TOKEN_FILE"]).read_text().strip()
    reply = httpx.post(
        f"{stack.env['LINEAGEHUB_GATEWAY_URL']}/api/v1/pipeline/run",
        json={**spec, "name": "traced", "namespace": namespace},
        headers={
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{caller_trace}-{caller_span}-01",
        },
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    run = get(kubectl, "pipelinerun", "traced", "-n", namespace)
    annotation = run["metadata"]["annotations"]["lineagehub.io/traceparent"]
    _, trace_id, gateway_span, _ = annotation.split("-")
    assert trace_id == caller_trace and gateway_span != caller_span
    status = wait_verified(kubectl, namespace, "traced")
    assert status["phase"] == "Succeeded" and status["traceId"] == caller_trace
    trace = verdict(status, "TraceRecorded")
    assert trace is not None and trace["status"] == "True", trace
    root_span_id = status["traceparent"].split("-")[2]

    def all_there() -> list[Obj] | None:
        spans = jaeger_spans(stack.env, caller_trace)
        ids = {s["spanID"] for s in spans}
        return spans if {root_span_id, gateway_span} <= ids else None

    spans = wait_until(all_there, timeout=60, every=1.0)
    by_id = {s["spanID"]: s for s in spans}

    def parent(span_id: str) -> list[str]:
        refs = by_id[span_id]["references"]
        return [r["spanID"] for r in refs if r["refType"] == "CHILD_OF"]

    assert parent(root_span_id) == [gateway_span]
    assert parent(gateway_span) == [caller_span]
    assert by_id[gateway_span]["operationName"].startswith("POST /api/v1/pipeline/run")
    stages = [s for s in spans if s["operationName"] in STAGE_SPANS]
    assert {s["operationName"] for s in stages} == STAGE_SPANS
    assert all(parent(s["spanID"]) == [root_span_id] for s in stages)
