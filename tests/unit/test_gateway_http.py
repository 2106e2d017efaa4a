"""The gateway's HTTP layer: auth, limits, validation paths, gzip, batches, status codes.

The publisher here is an in-memory stand-in that only records what the app hands
it: these tests are about the HTTP layer. Delivery to a real Kafka, consumed back
with its key, is in tests/integration/test_gateway.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)

from consumers.samples import lineage_event
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.logs import ACCESS_LOGGER
from tests import promparse

WRITER = "lineage-writer-token-0001"
READER = "runs-reader-token-0000001"
OTHER = "another-lineage-token-002"
TOKENS = f"{WRITER}:lineage:write;{READER}:runs:read;{OTHER}:lineage:write"
AUTH = {"Authorization": f"Bearer {WRITER}"}


class RecordingPublisher:
    """Records (topic, key, value) in order; can be told to fail or hang."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.starts = 0
        self.fail_start: Exception | None = None
        self.fail_send: Exception | None = None
        self.hang = False

    async def start(self) -> None:
        self.starts += 1
        if self.fail_start is not None:
            raise self.fail_start

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail_send is not None:
            raise self.fail_send
        await asyncio.sleep(0)
        self.sent.append((topic, key, value))


def settings(**overrides: Any) -> Settings:
    base = Settings(
        tokens=parse_tokens(TOKENS),
        kafka_bootstrap="127.0.0.1:1",
        rate_per_s=1000.0,
        rate_burst=1000,
    )
    return replace(base, **overrides)


def make_app(publisher: RecordingPublisher, **overrides: Any) -> FastAPI:
    return create_app(settings(**overrides), publisher=publisher, runs=None, metrics_store=None)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(publisher: RecordingPublisher) -> Iterator[TestClient]:
    app = create_app(settings(), publisher=publisher, runs=None, metrics_store=None)
    with TestClient(app) as c:
        yield c


def run_id() -> str:
    return str(uuid.uuid4())


# ------------------------------------------------------------------ single events


def test_one_event_is_published_keyed_by_run_id(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    rid = run_id().upper()
    event = lineage_event(rid)
    r = client.post("/api/v1/lineage", json=event, headers=AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "accepted"
    assert body["runId"] == rid.lower()
    assert body["kind"] == "RunEvent" and body["eventType"] == "START"
    [(topic, key, value)] = publisher.sent
    assert topic == "openlineage-events"
    assert key == rid.lower()
    assert json.loads(value) == event


def test_the_seed_webhook_alias(client: TestClient, publisher: RecordingPublisher) -> None:
    r = client.post("/api/v1/webhook/lineage", json=lineage_event(run_id()), headers=AUTH)
    assert r.status_code == 201
    assert len(publisher.sent) == 1


@pytest.mark.parametrize("compression", [None, HttpCompression.GZIP])
def test_a_request_exactly_as_the_openlineage_http_transport_builds_it(
    client: TestClient, publisher: RecordingPublisher, compression: HttpCompression | None
) -> None:
    # The client's own request builder: headers, api_key Bearer auth, gzip.
    transport = HttpTransport(
        HttpConfig(
            url="http://gateway.invalid",
            auth=ApiKeyTokenProvider({"api_key": WRITER}),
            compression=compression,
        )
    )
    rid = run_id()
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2025-01-02T03:04:05.123456Z",
        run=Run(runId=rid),
        job=Job(namespace="ns", name="job"),
        producer="https://example.com/producer",
    )
    body, headers = transport._prepare_request(Serde.to_json(event))
    assert headers["Authorization"] == f"Bearer {WRITER}"
    assert (headers.get("Content-Encoding") == "gzip") == (compression is not None)
    r = client.post(f"/{transport.endpoint}", content=body, headers=headers)
    assert r.status_code == 201, r.text
    assert publisher.sent[0][1] == rid


def test_dataset_and_job_events_are_accepted(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    head = {
        "eventTime": "2025-01-02T03:04:05Z",
        "producer": "https://example.com/p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
    }
    dataset = {**head, "dataset": {"namespace": "s3://b", "name": "orders"}}
    job = {
        **head,
        # Marquez tells the kinds apart by schemaURL, so a JobEvent must say so there.
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
        "job": {"namespace": "ns", "name": "daily"},
        "inputs": [],
        "outputs": [],
    }
    r1 = client.post("/api/v1/lineage", json=dataset, headers=AUTH)
    r2 = client.post("/api/v1/lineage", json=job, headers=AUTH)
    assert (r1.status_code, r2.status_code) == (201, 201)
    assert r1.json()["kind"] == "DatasetEvent" and r1.json()["runId"] is None
    assert [k for _, k, _ in publisher.sent] == ["dataset:s3://b/orders", "job:ns/daily"]


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda e: e["run"].update(runId=None), "$.run.runId"),
        (lambda e: e.pop("eventTime"), "$.eventTime"),
        (lambda e: e.update(eventTime="yesterday"), "$.eventTime"),
        (lambda e: e.update(eventType={"state": "DONE"}), "$.eventType"),
        (lambda e: e["job"].update(name=""), "$.job.name"),
        (lambda e: e["inputs"][0].pop("namespace"), "$.inputs[0].namespace"),
        (
            lambda e: e["outputs"][0]["facets"]["columnLineage"].update(fields=["id"]),
            "$.outputs[0].facets.columnLineage.fields",
        ),
    ],
)
def test_invalid_event_is_400_with_the_failing_path(
    client: TestClient, publisher: RecordingPublisher, mutate: Any, path: str
) -> None:
    event = lineage_event(run_id())
    mutate(event)
    r = client.post("/api/v1/lineage", json=event, headers=AUTH)
    assert r.status_code == 400, r.text
    errors = r.json()["detail"]["errors"]
    assert path in [e["path"] for e in errors], errors
    assert publisher.sent == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"{not json", "line 1"), (b"", "empty"), (b'"a string"', "expected an object")],
)
def test_not_json_or_not_an_object(client: TestClient, body: bytes, fragment: str) -> None:
    r = client.post("/api/v1/lineage", content=body, headers=AUTH)
    assert r.status_code == 400
    assert fragment in json.dumps(r.json())


def test_bad_gzip_and_unknown_encodings(client: TestClient) -> None:
    r = client.post(
        "/api/v1/lineage", content=b"nope", headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert r.status_code == 400 and "gzip" in r.json()["detail"]
    r = client.post("/api/v1/lineage", content=b"{}", headers={**AUTH, "Content-Encoding": "br"})
    assert r.status_code == 415


# ------------------------------------------------------------------ batches


def test_batch_answers_per_item_and_keeps_order_per_run(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    a, b = run_id(), run_id()
    bad = lineage_event(a)
    bad["run"]["runId"] = None
    batch = [
        lineage_event(a, "START"),
        lineage_event(b, "START"),
        bad,
        lineage_event(a, "RUNNING"),
        lineage_event(a, "COMPLETE"),
        lineage_event(b, "FAIL"),
    ]
    r = client.post("/api/v1/lineage", json=batch, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"], body["unavailable"]) == (5, 1, 0)
    assert [x["status"] for x in body["results"]] == [201, 201, 400, 201, 201, 201]
    assert [x["index"] for x in body["results"]] == list(range(6))
    assert body["results"][2]["errors"][0]["path"] == "$.run.runId"
    per_run: dict[str, list[str]] = {}
    for _, key, value in publisher.sent:
        per_run.setdefault(key, []).append(json.loads(value)["eventType"])
    assert per_run == {a: ["START", "RUNNING", "COMPLETE"], b: ["START", "FAIL"]}


def test_empty_and_oversized_batches(publisher: RecordingPublisher) -> None:
    app = make_app(publisher, max_batch_items=3)
    with TestClient(app) as c:
        assert c.post("/api/v1/lineage", json=[], headers=AUTH).status_code == 400
        many = [lineage_event(run_id()) for _ in range(4)]
        assert c.post("/api/v1/lineage", json=many, headers=AUTH).status_code == 413
    assert publisher.sent == []


# ------------------------------------------------------------------ Kafka unavailable


def test_kafka_that_cannot_start_is_503_with_retry_after(publisher: RecordingPublisher) -> None:
    publisher.fail_start = ConnectionError("Unable to bootstrap from 127.0.0.1:1")
    app = create_app(settings(retry_after_s=7), publisher=publisher, runs=None, metrics_store=None)
    with TestClient(app) as c:
        r = c.post("/api/v1/lineage", json=lineage_event(run_id()), headers=AUTH)
        assert r.status_code == 503
        assert 1 <= int(r.headers["Retry-After"]) <= 7
        assert "bootstrap" in r.json()["detail"]
        starts = publisher.starts
        # Within the cool-down the gateway doesn't try to connect again for every request.
        r = c.post("/api/v1/lineage", json=[lineage_event(run_id())], headers=AUTH)
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert r.json()["results"][0]["status"] == 503
        assert publisher.starts == starts


def test_an_unacknowledged_send_times_out_into_503(publisher: RecordingPublisher) -> None:
    publisher.hang = True
    app = create_app(
        settings(kafka_timeout_s=0.2), publisher=publisher, runs=None, metrics_store=None
    )
    with TestClient(app) as c:
        r = c.post("/api/v1/lineage", json=lineage_event(run_id()), headers=AUTH)
    assert r.status_code == 503
    assert "did not acknowledge" in r.json()["detail"]


def test_a_batch_stops_a_run_at_its_first_failure(publisher: RecordingPublisher) -> None:
    publisher.fail_send = RuntimeError("broker went away")
    app = create_app(settings(), publisher=publisher, runs=None, metrics_store=None)
    rid = run_id()
    with TestClient(app) as c:
        r = c.post(
            "/api/v1/lineage",
            json=[lineage_event(rid, "START"), lineage_event(rid, "COMPLETE")],
            headers=AUTH,
        )
    assert r.status_code == 503
    assert [x["status"] for x in r.json()["results"]] == [503, 503]


def test_no_kafka_configured_is_503(publisher: RecordingPublisher) -> None:
    app = create_app(settings(kafka_bootstrap=""), publisher=None, runs=None, metrics_store=None)
    with TestClient(app) as c:
        r = c.post("/api/v1/lineage", json=lineage_event(run_id()), headers=AUTH)
    assert r.status_code == 503 and "KAFKA_BOOTSTRAP" in r.json()["detail"]


# ------------------------------------------------------------------ auth and limits


def test_missing_and_wrong_tokens_are_401(client: TestClient) -> None:
    event = lineage_event(run_id())
    wrong = {"Authorization": "Bearer wrong-token-xxxxxxxxxx"}
    for headers in ({}, wrong, {"Authorization": WRITER}):
        r = client.post("/api/v1/lineage", json=event, headers=headers)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_a_token_without_the_scope_is_403(client: TestClient) -> None:
    r = client.post(
        "/api/v1/lineage",
        json=lineage_event(run_id()),
        headers={"Authorization": f"Bearer {READER}"},
    )
    assert r.status_code == 403 and "lineage:write" in r.json()["detail"]


def test_rate_limit_per_token(publisher: RecordingPublisher) -> None:
    app = create_app(
        settings(rate_per_s=0.5, rate_burst=2), publisher=publisher, runs=None, metrics_store=None
    )
    with TestClient(app) as c:
        codes = [
            c.post("/api/v1/lineage", json=lineage_event(run_id()), headers=AUTH).status_code
            for _ in range(3)
        ]
        assert codes == [201, 201, 429]
        r = c.post("/api/v1/lineage", json=lineage_event(run_id()), headers=AUTH)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        other = {"Authorization": f"Bearer {OTHER}"}
        r = c.post("/api/v1/lineage", json=lineage_event(run_id()), headers=other)
        assert r.status_code == 201
        text = c.get("/metrics").text
    assert promparse.value(text, "lineagehub_gateway_rejected_total", reason="rate_limited") == 2


def test_anonymous_mode_grants_every_scope(publisher: RecordingPublisher) -> None:
    s = settings(tokens=parse_tokens("", anonymous=True))
    app = create_app(s, publisher=publisher, runs=None, metrics_store=None)
    with TestClient(app) as c:
        assert c.post("/api/v1/lineage", json=lineage_event(run_id())).status_code == 201


def test_body_over_the_limit_by_content_length(publisher: RecordingPublisher) -> None:
    app = make_app(publisher, max_body_bytes=2000)
    event = lineage_event(run_id())
    event["job"]["facets"] = {"pad": {"_producer": "x:y", "_schemaURL": "x:y", "v": "a" * 3000}}
    with TestClient(app) as c:
        r = c.post("/api/v1/lineage", json=event, headers=AUTH)
        assert r.status_code == 413
        assert "x-request-id" in r.headers  # answered by our middleware, still logged


def test_chunked_body_over_the_limit(publisher: RecordingPublisher) -> None:
    app = make_app(publisher, max_body_bytes=2000)

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 500

    with TestClient(app) as c:
        r = c.post("/api/v1/lineage", content=chunks(), headers=AUTH)
    assert r.status_code == 413
    assert publisher.sent == []


def test_gzip_bomb_is_413(publisher: RecordingPublisher) -> None:
    app = create_app(
        settings(max_body_bytes=1024 * 1024), publisher=publisher, runs=None, metrics_store=None
    )
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]", compresslevel=9)
    with TestClient(app) as c:
        r = c.post("/api/v1/lineage", content=bomb, headers={**AUTH, "Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_one_event_over_the_kafka_record_limit(publisher: RecordingPublisher) -> None:
    app = make_app(publisher, max_event_bytes=3000)
    small, big = lineage_event(run_id()), lineage_event(run_id())
    big["job"]["facets"] = {"pad": {"_producer": "x:y", "_schemaURL": "x:y", "v": "a" * 3000}}
    with TestClient(app) as c:
        assert c.post("/api/v1/lineage", json=big, headers=AUTH).status_code == 413
        r = c.post("/api/v1/lineage", json=[small, big], headers=AUTH)
    assert [x["status"] for x in r.json()["results"]] == [201, 413]


# ------------------------------------------------------------------ CORS, ids, logs, docs


def test_cors_is_off_by_default(client: TestClient) -> None:
    r = client.options(
        "/api/v1/lineage",
        headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_configured(publisher: RecordingPublisher) -> None:
    s = settings(cors_origins=("https://ui.example",))
    app = create_app(s, publisher=publisher, runs=None, metrics_store=None)
    with TestClient(app) as c:
        r = c.options(
            "/api/v1/lineage",
            headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.headers["access-control-allow-origin"] == "https://ui.example"
        r = c.options(
            "/api/v1/lineage",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in r.headers


def test_request_id_in_and_out_and_in_the_access_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        r = client.post(
            "/api/v1/lineage",
            json=lineage_event(run_id()),
            headers={**AUTH, "X-Request-ID": "abc-123"},
        )
        unsafe = client.get("/api/v1/health", headers={"X-Request-ID": "bad id\x7f"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = unsafe.headers["x-request-id"]
    assert generated != "bad id\x7f" and len(generated) == 32
    record = next(rec for rec in caplog.records if getattr(rec, "request_id", "") == "abc-123")
    assert vars(record)["route"] == "/api/v1/lineage"
    assert vars(record)["status"] == 201
    assert vars(record)["principal"].startswith("token:")
    from gateway.logs import JsonFormatter

    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "abc-123" and line["method"] == "POST"


def test_prometheus_text(client: TestClient) -> None:
    client.post("/api/v1/lineage", json=lineage_event(run_id()), headers=AUTH)
    client.post("/api/v1/lineage", json={"run": {}}, headers=AUTH)
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    requests = "lineagehub_gateway_http_requests_total"
    assert (
        promparse.value(text, requests, method="POST", route="/api/v1/lineage", status="201") == 1
    )
    assert promparse.value(text, "lineagehub_gateway_lineage_events_total", result="accepted") == 1
    assert promparse.value(text, "lineagehub_gateway_lineage_events_total", result="invalid") == 1
    assert promparse.value(text, "lineagehub_gateway_kafka_publish_seconds_count") == 1
    assert "# TYPE lineagehub_gateway_http_request_duration_seconds histogram" in text
    assert 'le="+Inf"' in text


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/v1/lineage",
        "/api/v1/webhook/lineage",
        "/api/v1/pipeline/run",
        "/api/v1/pipeline/run/{name}",
        "/api/v1/pipeline/runs",
        "/api/v1/metrics",
        "/api/v1/health",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert "requestBody" in spec["paths"]["/api/v1/lineage"]["post"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


def test_health_reports_each_dependency(publisher: RecordingPublisher) -> None:
    # Nothing listens on 127.0.0.1:1; Kubernetes is not configured; both required.
    app = create_app(settings(), publisher=publisher, runs=None, metrics_store=None)
    with TestClient(app) as c:
        r = c.get("/api/v1/health", headers=AUTH)
        anonymous = c.get("/api/v1/health")
        assert r.status_code == 503
        # Without a token: the verdict only, from the same (cached) run of the probes.
        assert anonymous.status_code == 503
        assert set(anonymous.json()) == {"status", "ageSeconds"}
        assert anonymous.json()["status"] == "down"
        deps = r.json()["dependencies"]
        assert set(deps) == {"kafka", "kubernetes", "clickhouse", "marquez"}
        assert deps["kafka"]["status"] == "down" and deps["kafka"]["latencyMs"] is not None
        assert deps["kubernetes"]["status"] == "down"
        assert deps["clickhouse"]["status"] == "disabled"
    relaxed = create_app(
        settings(required=frozenset()), publisher=publisher, runs=None, metrics_store=None
    )
    with TestClient(relaxed) as c:
        r = c.get("/api/v1/health", headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "degraded"
