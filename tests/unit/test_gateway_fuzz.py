"""A seeded property-style run against the gateway's own OpenAPI spec: no input gives a 500.

Requests are built from `/openapi.json`: every operation, with path and query values
that are sometimes valid and sometimes garbage, and bodies that are random JSON,
valid documents with one random mutation, or random bytes (plain or gzip). The
backends are in-memory stand-ins; this is about the HTTP layer's input handling.
"""

from __future__ import annotations

import builtins
import copy
import gzip
import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from consumers.otel.backend import to_json_each_row
from consumers.samples import lineage_event
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.clickhouse import ChdbStore
from gateway.config import Settings
from gateway.runs import KubeError
from tests.warehouse_events import dataset_in, dataset_out, later, new_run_id, run_event

TOKEN = "fuzz-token-with-all-scopes-01"
SEED = 20250102
ROUNDS = 400

SPEC = {
    "source": {"uri": "file:///data/in.csv", "format": "csv"},
    "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
}


class Publisher:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        return None


class Runs:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        name = meta.get("name") or f"{meta['generateName']}{len(self.objects)}"
        if (namespace, name) in self.objects:
            raise KubeError(409, "exists")
        obj = {**body, "metadata": {**meta, "name": name}}
        self.objects[(namespace, name)] = obj
        return obj

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.objects:
            raise KubeError(404, "not found")
        return self.objects[(namespace, name)]

    async def list(self, namespace: str, limit: int) -> list[dict[str, Any]]:
        return [o for (ns, _), o in self.objects.items() if ns == namespace][:limit]

    async def find(self, namespace: str, label_selector: str) -> builtins.list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [
            o
            for (ns, _), o in self.objects.items()
            if ns == namespace and o["metadata"].get("labels", {}).get(key) == value
        ]

    async def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


def random_text(rng: random.Random, n: int = 12) -> str:
    alphabet = string.printable + "äß€\u2028\U0001f600\x00"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "str"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 2**63, -(2**70), rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-300, rng.random()])
    if kind == "str":
        return random_text(rng)
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng, 6): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def mutate(rng: random.Random, doc: Any) -> Any:
    """Replace one randomly chosen value somewhere in `doc` with random JSON."""
    doc = copy.deepcopy(doc)
    node = doc
    for _ in range(rng.randint(0, 4)):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if isinstance(node[key], dict | list) and node[key] and rng.random() < 0.7:
                node = node[key]
                continue
            node[key] = random_json(rng)
            return doc
        if isinstance(node, list) and node:
            i = rng.randrange(len(node))
            if isinstance(node[i], dict | list) and node[i] and rng.random() < 0.7:
                node = node[i]
                continue
            node[i] = random_json(rng)
            return doc
        break
    if isinstance(node, dict):
        node[random_text(rng, 8)] = random_json(rng)
    return doc


def body_for(rng: random.Random, path: str) -> tuple[bytes, dict[str, str]]:
    valid: Any = lineage_event("0190f3b0-7c1a-7d2e-8f00-0123456789ab")
    if path.endswith("/pipeline/run"):
        valid = {**SPEC, "name": "fuzz"}
    choice = rng.random()
    if choice < 0.35:
        doc = mutate(rng, valid)
    elif choice < 0.5:
        doc = [mutate(rng, valid) for _ in range(rng.randint(0, 3))]
    elif choice < 0.8:
        doc = random_json(rng)
    else:
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        return raw, {"Content-Type": "application/json"}
    data = json.dumps(doc).encode()
    headers = {"Content-Type": "application/json"}
    if rng.random() < 0.2:
        data = gzip.compress(data)
        headers["Content-Encoding"] = rng.choice(["gzip", "gzip", "deflate", "gzip, identity"])
    return data, headers


def param_value(rng: random.Random, schema: dict[str, Any]) -> str:
    if rng.random() < 0.5:
        options = schema.get("anyOf", [schema])
        kinds = {o.get("type") for o in options} | {e for o in options for e in o.get("enum", [])}
        if "integer" in kinds or "number" in kinds:
            return str(rng.choice([0, 1, 60, 100, 86400, -5, 10**12]))
        if "Succeeded" in kinds:
            return rng.choice(["Pending", "Running", "Succeeded", "Failed", "Cancelled"])
        return rng.choice(["default", "team-a", "a-b", "fuzz"])
    return random_text(rng, 20)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        stream_seconds=0,  # the live stream sends one event and ends
        tokens=parse_tokens(f"{TOKEN}:lineage:write,lineage:read,runs:write,runs:read"),
        kafka_bootstrap="127.0.0.1:1",
        rate_per_s=0,
        health_timeout_s=0.5,
    )
    # A real (embedded) warehouse with one run in it, so the lineage reads run their SQL.
    store = ChdbStore(str(tmp_path / "chdb"))
    for sql in LINEAGE_SCHEMA.create("otel", 0):
        store._query(sql)
    run = run_event(
        "COMPLETE",
        new_run_id(),
        ("fuzz", "job"),
        later(1),
        inputs=[dataset_in("s3://fuzz", "in", ("id", "int"))],
        outputs=[
            dataset_out(
                "s3://fuzz", "out", ("id", "int"), columns={"id": [("s3://fuzz", "in", "id")]}
            )
        ],
    )
    for table, rows in decode_lineage(run).items():
        store._query(
            f"INSERT INTO otel.{table} FORMAT JSONEachRow\n"
            + to_json_each_row(LINEAGE_SCHEMA.tables[table], rows)
        )
    app = create_app(settings, publisher=Publisher(), runs=Runs(), metrics_store=store)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]


def test_no_request_built_from_the_openapi_spec_gets_a_500(client: TestClient) -> None:
    rng = random.Random(SEED)
    ops = operations(client.get("/openapi.json").json())
    paths = {path for path, _, _ in ops}
    assert {
        "/api/v1/lineage",
        "/api/v1/pipeline/run",
        "/api/v1/column-lineage",
        "/api/v1/lineage/dataset",
        "/api/v1/dashboards/{uid}/panels/{panel_id}",
        "/api/v1/traces/{trace_id}/spans",
    } <= paths, paths
    seen: dict[int, int] = {}
    for _ in range(ROUNDS):
        path, method, op = rng.choice(ops)
        url = path
        query: dict[str, str] = {}
        for param in op.get("parameters", []):
            value = param_value(rng, param.get("schema", {}))
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", quote(value, safe="") or "x")
            elif rng.random() < 0.7:
                query[param["name"]] = value
        headers = {"Authorization": f"Bearer {TOKEN}"} if rng.random() < 0.9 else {}
        if method == "POST":
            content, extra = body_for(rng, path)
            r = client.request(
                method, url, params=query, content=content, headers={**headers, **extra}
            )
        else:
            r = client.request(method, url, params=query, headers=headers)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500 or r.status_code == 503, (method, url, query, r.text)
        assert r.headers.get("x-request-id")
    # The run reached the interesting answers, not only one kind of refusal.
    assert {200, 201, 400, 422} <= set(seen), seen
