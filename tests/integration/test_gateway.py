"""The gateway against the real local stack: Kafka, the API server and the operator.

The app runs in-process under uvicorn on a free loopback port; events arrive
through openlineage-python's own HTTP transport and are read back from Kafka.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import TopicPartition
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)

from consumers.testkit import end_offsets, read_from
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.serve import ServerThread, free_port
from lineagehub.topics import LINEAGE_TOPIC
from stack.paths import REPO_ROOT
from tests.helpers import Obj, get, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.dataplane]

TOKEN = "integration-gateway-token-0001"
READ_ONLY = "integration-gateway-reader-01"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCER = "https://github.com/lineagehub/lineage-hub/tests"
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())


def settings(env: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tokens": parse_tokens(f"{TOKEN}:lineage:write,runs:write,runs:read;{READ_ONLY}:runs:read"),
        "kafka_bootstrap": env["KAFKA_BOOTSTRAP"],
        "kubeconfig": env["KUBECONFIG"],
        "marquez_url": env.get("MARQUEZ_URL", ""),
        "kafka_timeout_s": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def gateway(stack: Any) -> Iterator[ServerThread]:
    with ServerThread(create_app(settings(stack.env))) as server:
        yield server


async def _end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    return await end_offsets(bootstrap, [LINEAGE_TOPIC])


async def _read_from(
    bootstrap: str, start: dict[TopicPartition, int], run_id: str, expect: int, within: float
) -> list[Any]:
    """Records for `run_id` (by payload) from the `start` offsets on."""

    def for_run(record: Any) -> bool:
        event = json.loads(record.value)
        return bool(event.get("run", {}).get("runId", "").lower() == run_id)

    return await read_from(bootstrap, start, for_run, expect, within)


def _client(url: str, compression: HttpCompression | None) -> OpenLineageClient:
    config = HttpConfig(
        url=url,
        auth=ApiKeyTokenProvider({"api_key": TOKEN}),
        compression=compression,
        timeout=20.0,
        retry={"total": 0},
    )
    return OpenLineageClient(transport=HttpTransport(config))


def _event(run_id: str, state: RunState, job: str) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        run=Run(runId=run_id),
        job=Job(namespace="lineagehub-gateway-test", name=job),
        producer=PRODUCER,
    )


@pytest.mark.parametrize("compression", [None, HttpCompression.GZIP])
def test_openlineage_client_events_reach_kafka_keyed_by_run_id(
    stack: Any, gateway: ServerThread, compression: HttpCompression | None
) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    start = asyncio.run(_end_offsets(bootstrap))
    assert start, f"topic {LINEAGE_TOPIC} has no partitions"
    run_id = str(uuid.uuid4())
    client = _client(gateway.url, compression)
    job = f"gw-{uuid.uuid4().hex[:8]}"
    for state in (RunState.START, RunState.COMPLETE):
        client.emit(_event(run_id, state, job))  # raises on any non-2xx answer
    records = asyncio.run(_read_from(bootstrap, start, run_id, expect=2, within=30))
    assert [json.loads(r.value)["eventType"] for r in records] == ["START", "COMPLETE"]
    assert {r.key for r in records} == {run_id.encode()}
    assert len({r.partition for r in records}) == 1  # one key, one partition, in order


def test_a_batch_reaches_kafka(stack: Any, gateway: ServerThread) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    start = asyncio.run(_end_offsets(bootstrap))
    run_id = str(uuid.uuid4())
    from openlineage.client.serde import Serde

    batch = [
        json.loads(Serde.to_json(_event(run_id, s, "gw-batch")))
        for s in (RunState.START, RunState.RUNNING, RunState.COMPLETE)
    ]
    r = httpx.post(f"{gateway.url}/api/v1/lineage", json=batch, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == [201, 201, 201]
    records = asyncio.run(_read_from(bootstrap, start, run_id, expect=3, within=30))
    assert [json.loads(x.value)["eventType"] for x in records] == ["START", "RUNNING", "COMPLETE"]


def test_a_batch_of_interleaved_runs_keeps_each_runs_order(
    stack: Any, gateway: ServerThread
) -> None:
    """Each run's events are appended together and acknowledged together (one round
    trip): they still land in the order sent, on one partition per run."""
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    start = asyncio.run(_end_offsets(bootstrap))
    from openlineage.client.serde import Serde

    run_ids = [str(uuid.uuid4()) for _ in range(4)]
    states = [RunState.START, RunState.RUNNING, RunState.RUNNING, RunState.COMPLETE]
    batch = []
    for step, state in enumerate(states):
        for rid in run_ids:
            event = json.loads(Serde.to_json(_event(rid, state, "gw-interleaved")))
            event["run"]["facets"] = {"step": {"_producer": PRODUCER, "_schemaURL": PRODUCER}}
            event["run"]["facets"]["step"]["n"] = step
            batch.append(event)
    r = httpx.post(f"{gateway.url}/api/v1/lineage", json=batch, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    assert {x["status"] for x in r.json()["results"]} == {201}
    for rid in run_ids:
        records = asyncio.run(_read_from(bootstrap, start, rid, expect=4, within=30))
        steps = [json.loads(x.value)["run"]["facets"]["step"]["n"] for x in records]
        assert steps == [0, 1, 2, 3], (rid, steps)
        assert len({x.partition for x in records}) == 1


def test_invalid_event_is_400_with_the_path(gateway: ServerThread) -> None:
    from openlineage.client.serde import Serde

    event = json.loads(Serde.to_json(_event(str(uuid.uuid4()), RunState.START, "gw-bad")))
    # Marquez stores any run id (it hashes a non-UUID), but no event without a time.
    event["eventTime"] = "yesterday"
    r = httpx.post(f"{gateway.url}/api/v1/lineage", json=event, headers=AUTH, timeout=10)
    assert r.status_code == 400
    assert r.json()["detail"]["errors"][0]["path"] == "$.eventTime"


def test_kafka_unreachable_is_503_with_retry_after(stack: Any) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    app = create_app(settings(stack.env, kafka_bootstrap=dead, kafka_timeout_s=5.0))
    from openlineage.client.serde import Serde

    event = json.loads(Serde.to_json(_event(str(uuid.uuid4()), RunState.START, "gw-dead")))
    with ServerThread(app) as server:
        # The gateway answers once its own 5 s Kafka wait is over: a gateway that hung
        # on the dead broker instead would make this call time out and fail the test.
        r = httpx.post(f"{server.url}/api/v1/lineage", json=event, headers=AUTH, timeout=30)
        health = httpx.get(f"{server.url}/api/v1/health", headers=AUTH, timeout=30)
    assert r.status_code == 503, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert health.status_code == 503
    assert health.json()["dependencies"]["kafka"]["status"] == "down"


def test_health_with_the_stack_up(gateway: ServerThread) -> None:
    r = httpx.get(f"{gateway.url}/api/v1/health", headers=AUTH, timeout=30)
    deps = r.json()["dependencies"]
    assert deps["kafka"]["status"] == "ok", deps
    assert deps["kubernetes"]["status"] == "ok", deps
    assert r.status_code == 200


def _spec(namespace: str, name: str) -> Obj:
    spec: Obj = copy.deepcopy(EXAMPLE["spec"])
    spec["sink"]["uri"] = f"file:///data/output/{namespace}/{name}.parquet"
    return spec


def test_a_run_created_over_http_is_a_pipelinerun_and_succeeds(
    gateway: ServerThread, kubectl: Any, namespace: str
) -> None:
    body = {**_spec(namespace, "over-http"), "name": "over-http", "namespace": namespace}
    r = httpx.post(
        f"{gateway.url}/api/v1/pipeline/run?wait=10", json=body, headers=AUTH, timeout=30
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["name"], created["namespace"]) == ("over-http", namespace)
    seen = get(kubectl, "pipelinerun", "over-http", "-n", namespace)
    assert seen["spec"]["source"]["uri"] == EXAMPLE["spec"]["source"]["uri"]
    assert seen["metadata"]["labels"]["app.kubernetes.io/created-by"] == "lineage-hub-gateway"

    def phase() -> Obj | None:
        s = httpx.get(created["statusUrl"], headers=AUTH, timeout=10)
        assert s.status_code == 200, s.text
        doc: Obj = s.json()
        return doc if doc["phase"] in {"Succeeded", "Failed", "Cancelled"} else None

    final = wait_until(phase, timeout=180, every=1.0)
    assert final["phase"] == "Succeeded", final
    assert uuid.UUID(final["runId"]).version == 7  # assigned by the operator
    assert final["status"]["progress"] == "3/3"

    listed = httpx.get(
        f"{gateway.url}/api/v1/pipeline/runs",
        params={"namespace": namespace, "phase": "Succeeded"},
        headers={"Authorization": f"Bearer {READ_ONLY}"},
        timeout=10,
    ).json()
    assert [i["name"] for i in listed["items"]] == ["over-http"]


def test_api_server_validation_and_rights(gateway: ServerThread, namespace: str) -> None:
    body = {**_spec(namespace, "dup"), "name": "dup", "namespace": namespace}
    first = httpx.post(f"{gateway.url}/api/v1/pipeline/run", json=body, headers=AUTH, timeout=30)
    again = httpx.post(f"{gateway.url}/api/v1/pipeline/run", json=body, headers=AUTH, timeout=30)
    reader = httpx.post(
        f"{gateway.url}/api/v1/pipeline/run",
        json=body,
        headers={"Authorization": f"Bearer {READ_ONLY}"},
        timeout=30,
    )
    missing = httpx.get(
        f"{gateway.url}/api/v1/pipeline/run/nope",
        params={"namespace": namespace},
        headers=AUTH,
        timeout=30,
    )
    assert (first.status_code, again.status_code) == (201, 409)
    assert reader.status_code == 403
    assert missing.status_code == 404
