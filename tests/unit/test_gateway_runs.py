"""Runs over HTTP and pipeline metrics: the HTTP layer against an in-memory run store,
the Kubernetes error mapping, and the metrics query on a real embedded ClickHouse.

Creating a PipelineRun through the real API server is in tests/integration/test_gateway.py.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes.client.exceptions import ApiException

from consumers.otel.backend import ChdbBackend
from consumers.otel.ddl import PIPELINE_RUNS
from consumers.otel.decode import decode_trace_tables
from consumers.samples import run_trace
from gateway import clickhouse
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.runs import KubeError, KubeRuns, _translate

WRITER = "runs-writer-token-000001"
READER = "runs-reader-token-000001"
LINEAGE = "lineage-only-token-00001"
W = {"Authorization": f"Bearer {WRITER}"}
R = {"Authorization": f"Bearer {READER}"}

SPEC: dict[str, Any] = {
    "source": {"uri": "file:///data/examples/orders.csv", "format": "csv"},
    "transform": {"select": ["order_id", "amount"]},
    "sink": {"uri": "file:///data/output/orders.parquet", "format": "parquet"},
}


class MemoryRuns:
    """Stores objects like the API server would (generateName, uid, status)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.gets = 0
        self.fail: KubeError | None = None
        self.assign_run_id_after_gets = -1

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.fail:
            raise self.fail
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        if "name" not in meta:
            meta["name"] = meta.pop("generateName") + f"{len(self.objects):05d}"
        if (namespace, meta["name"]) in self.objects:
            raise KubeError(409, f'pipelineruns "{meta["name"]}" already exists')
        meta["uid"] = f"uid-{meta['name']}"
        meta["creationTimestamp"] = "2025-01-02T03:04:05Z"
        self.objects[(namespace, meta["name"])] = obj
        return copy.deepcopy(obj)

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        if (namespace, name) not in self.objects:
            raise KubeError(404, f'pipelineruns "{name}" not found')
        obj = self.objects[(namespace, name)]
        if self.gets == self.assign_run_id_after_gets:
            obj["status"] = {"runId": "0190f3b0-7c1a-7d2e-8f00-0123456789ab", "phase": "Running"}
        return copy.deepcopy(obj)

    async def list(self, namespace: str, limit: int) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (ns, _), o in self.objects.items() if ns == namespace][:limit]

    async def find(self, namespace: str, label_selector: str) -> builtins.list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(o)
            for (ns, _), o in self.objects.items()
            if ns == namespace and o["metadata"].get("labels", {}).get(key) == value
        ]

    async def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


def settings(**overrides: Any) -> Settings:
    base = Settings(
        tokens=parse_tokens(
            f"{WRITER}:runs:write,runs:read;{READER}:runs:read;{LINEAGE}:lineage:write"
        ),
        namespace="team-a",
        required=frozenset({"kubernetes"}),
    )
    return replace(base, **overrides)


@pytest.fixture
def runs() -> MemoryRuns:
    return MemoryRuns()


@pytest.fixture
def client(runs: MemoryRuns) -> Iterator[TestClient]:
    app = create_app(settings(), publisher=None, runs=runs, metrics_store=None)
    with TestClient(app) as c:
        yield c


def test_create_posts_a_pipelinerun_and_answers_where_to_look(
    client: TestClient, runs: MemoryRuns
) -> None:
    headers = {**W, "X-Request-ID": "rq1"}
    r = client.post("/api/v1/pipeline/run", json={**SPEC, "name": "orders-1"}, headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "orders-1" and body["namespace"] == "team-a"
    assert body["runId"] is None  # the operator assigns it
    assert body["statusUrl"].endswith("/api/v1/pipeline/run/orders-1?namespace=team-a")
    assert r.headers["Location"] == body["statusUrl"]
    obj = runs.objects[("team-a", "orders-1")]
    assert obj["apiVersion"] == "lineagehub.io/v1alpha1" and obj["kind"] == "PipelineRun"
    assert obj["spec"]["source"] == SPEC["source"]
    assert obj["spec"]["transform"]["select"] == ["order_id", "amount"]
    assert "name" not in obj["spec"] and "namespace" not in obj["spec"]
    assert obj["metadata"]["labels"]["app.kubernetes.io/created-by"] == "lineage-hub-gateway"
    assert obj["metadata"]["annotations"]["lineagehub.io/gateway-request-id"] == "rq1"


def test_create_without_a_name_uses_generate_name(client: TestClient, runs: MemoryRuns) -> None:
    r = client.post("/api/v1/pipeline/run", json={**SPEC, "namespace": "team-b"}, headers=W)
    assert r.status_code == 201
    assert r.json()["name"].startswith("run-") and r.json()["namespace"] == "team-b"


def test_create_can_wait_for_the_run_id(client: TestClient, runs: MemoryRuns) -> None:
    runs.assign_run_id_after_gets = 2
    r = client.post("/api/v1/pipeline/run?wait=5", json={**SPEC, "name": "w"}, headers=W)
    assert r.status_code == 201
    assert r.json()["runId"] == "0190f3b0-7c1a-7d2e-8f00-0123456789ab"


def test_creating_needs_runs_write(client: TestClient) -> None:
    assert client.post("/api/v1/pipeline/run", json=SPEC).status_code == 401
    assert client.post("/api/v1/pipeline/run", json=SPEC, headers=R).status_code == 403
    lineage_only = {"Authorization": f"Bearer {LINEAGE}"}
    assert client.get("/api/v1/pipeline/runs", headers=lineage_only).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {**SPEC, "sink": SPEC["source"] | {"format": "csv"}},  # sink == source
        {**SPEC, "bogus": 1},  # unknown field
        {"source": SPEC["source"]},  # no sink
        {**SPEC, "name": "Not_A_DNS_Name"},
        {**SPEC, "namespace": "x" * 64},
    ],
)
def test_invalid_specs_are_422(client: TestClient, runs: MemoryRuns, body: dict[str, Any]) -> None:
    r = client.post("/api/v1/pipeline/run", json=body, headers=W)
    assert r.status_code == 422, r.text
    assert runs.objects == {}


def test_api_server_answers_are_passed_on(client: TestClient, runs: MemoryRuns) -> None:
    r = client.post("/api/v1/pipeline/run", json={**SPEC, "name": "a"}, headers=W)
    assert r.status_code == 201
    r = client.post("/api/v1/pipeline/run", json={**SPEC, "name": "a"}, headers=W)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    runs.fail = KubeError(503, "the Kubernetes API is unreachable", 5.0)
    r = client.post("/api/v1/pipeline/run", json={**SPEC, "name": "b"}, headers=W)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"


def test_get_and_list(client: TestClient, runs: MemoryRuns) -> None:
    for name in ("a", "b", "c"):
        client.post("/api/v1/pipeline/run", json={**SPEC, "name": name}, headers=W)
    status = {"phase": "Succeeded", "runId": "r-b", "progress": "3/3"}
    runs.objects[("team-a", "b")]["status"] = status
    r = client.get("/api/v1/pipeline/run/b", headers=R)
    assert r.status_code == 200
    body = r.json()
    assert (body["name"], body["phase"], body["runId"]) == ("b", "Succeeded", "r-b")
    assert body["status"]["progress"] == "3/3"
    assert client.get("/api/v1/pipeline/run/zzz", headers=R).status_code == 404
    assert client.get("/api/v1/pipeline/run/UPPER", headers=R).status_code == 422

    everything = client.get("/api/v1/pipeline/runs", headers=R).json()
    assert everything["count"] == 3 and everything["namespace"] == "team-a"
    done = client.get("/api/v1/pipeline/runs?phase=Succeeded", headers=R).json()
    assert [i["name"] for i in done["items"]] == ["b"]
    pending = client.get("/api/v1/pipeline/runs?phase=Pending", headers=R).json()
    assert sorted(i["name"] for i in pending["items"]) == ["a", "c"]
    assert client.get("/api/v1/pipeline/runs?namespace=other", headers=R).json()["count"] == 0
    assert client.get("/api/v1/pipeline/runs?phase=Done", headers=R).status_code == 422


def test_without_kubernetes_runs_are_503() -> None:
    app = create_app(settings(), publisher=None, runs=None, metrics_store=None)
    with TestClient(app) as c:
        r = c.get("/api/v1/pipeline/runs", headers=R)
    assert r.status_code == 503 and "KUBECONFIG" in r.json()["detail"]


def test_kube_client_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    store = KubeRuns("")
    with pytest.raises(KubeError) as err:
        asyncio.run(store.get("default", "x"))
    assert err.value.status == 503


def test_kube_client_with_a_kubeconfig_that_does_not_exist(tmp_path: Path) -> None:
    store = KubeRuns(str(tmp_path / "missing"))
    with pytest.raises(KubeError) as err:
        asyncio.run(store.get("default", "x"))
    assert err.value.status == 503 and "configuration" in err.value.message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, 404),
        (409, 409),
        (422, 422),
        (400, 400),
        (403, 502),
        (401, 502),
        (500, 503),
        (429, 503),
    ],
)
def test_api_exception_mapping(status: int, expected: int) -> None:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": f"the message {status}"})
    translated = _translate(exc)
    assert translated.status == expected
    assert f"the message {status}" in translated.message


def test_connection_errors_are_503() -> None:
    from urllib3.exceptions import MaxRetryError

    translated = _translate(MaxRetryError(None, "/apis", "connection refused"))  # type: ignore[arg-type]
    assert translated.status == 503 and translated.retry_after


# ------------------------------------------------------------------ metrics


def test_metrics_without_clickhouse_say_why() -> None:
    app = create_app(settings(), publisher=None, runs=None, metrics_store=None)
    with TestClient(app) as c:
        r = c.get("/api/v1/metrics", headers=R)
    assert r.status_code == 503
    assert "CLICKHOUSE_URL" in r.json()["detail"] and "Retry-After" in r.headers


def _shifted_rows(run_id: str, pipeline: str, status: str, now_ns: int) -> list[dict[str, Any]]:
    rows = decode_trace_tables(run_trace(run_id, pipeline=pipeline).SerializeToString())[
        PIPELINE_RUNS.name
    ]
    base = min(r["StartTime"] for r in rows)
    out = []
    for original in rows:
        row = dict(original)
        row["StartTime"] = row["StartTime"] - base + now_ns
        row["EndTime"] = row["EndTime"] - base + now_ns
        if row["Stage"] == "":
            row["Status"] = status
        out.append(row)
    return out


def test_pipeline_metrics_from_a_real_embedded_clickhouse(tmp_path: Path) -> None:
    path = str(tmp_path / "chdb")
    now_ns = time.time_ns() - 60 * 10**9

    async def fill() -> None:
        # The otel consumer's own backend writes the table, then lets go of the folder.
        backend = ChdbBackend(path, database="otel")
        await backend.setup()
        rows = (
            _shifted_rows("run-1", "orders", "Ok", now_ns)
            + _shifted_rows("run-2", "orders", "Error", now_ns)
            + _shifted_rows("run-3", "orders", "Ok", now_ns)
            + _shifted_rows("run-4", "payments", "Unset", now_ns)
        )
        await backend.insert(PIPELINE_RUNS, rows, "t1")
        await backend.close()

    asyncio.run(fill())
    store = clickhouse.ChdbStore(path, database="otel")
    app = create_app(settings(), publisher=None, runs=None, metrics_store=store)
    with TestClient(app) as c:
        r = c.get("/api/v1/metrics", headers=R)
        assert r.status_code == 200, r.text
        body = r.json()
        one = c.get("/api/v1/metrics?pipeline=payments", headers=R).json()
        health = c.get("/api/v1/health", headers=R).json()["dependencies"]["clickhouse"]
    assert body["source"] == "injected" and body["windowSeconds"] == 86400
    by_name = {p["pipeline"]: p for p in body["pipelines"]}
    orders = by_name["orders"]
    assert (orders["runs"], orders["succeeded"], orders["failed"]) == (3, 2, 1)
    assert orders["successRate"] == pytest.approx(2 / 3, abs=1e-3)
    assert orders["durationSeconds"]["p50"] > 0
    assert orders["durationSeconds"]["max"] >= orders["durationSeconds"]["p50"]
    assert orders["lastFinished"]
    assert by_name["payments"]["successRate"] == 1.0
    assert [p["pipeline"] for p in one["pipelines"]] == ["payments"]
    assert health["status"] == "ok"


def test_metrics_sql_is_safe_with_quotes() -> None:
    sql = clickhouse.metrics_sql("otel", 3600, "o'rders\\")
    assert "Pipeline = 'o\\'rders\\\\'" in sql
    with pytest.raises(ValueError):
        clickhouse.metrics_sql("otel; DROP", 60, None)
