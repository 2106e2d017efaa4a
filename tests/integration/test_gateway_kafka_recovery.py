"""The gateway outlives a Kafka outage: while the stack's broker is stopped, an event is
refused at once with 503 and Retry-After (never accepted and lost), and once the broker
is back the same gateway process accepts events again and they reach the topic."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from consumers.testkit import end_offsets, read_from
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.serve import ServerThread
from lineagehub.topics import LINEAGE_TOPIC
from tests.conftest import StackHandle
from tests.helpers import wait_until

pytestmark = [pytest.mark.dataplane]

TOKEN = "integration-kafka-recovery-01"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCER = "https://github.com/lineagehub/lineage-hub/tests"


def event(run_id: str) -> dict[str, Any]:
    return {
        "eventType": "START",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "run": {"runId": run_id},
        "job": {"namespace": "lineagehub-gateway-test", "name": "gw-recovery"},
        "inputs": [],
        "outputs": [],
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


@pytest.fixture
def gateway(kafka: StackHandle) -> Iterator[ServerThread]:
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:lineage:write"),
        kafka_bootstrap=kafka.env["KAFKA_BOOTSTRAP"],
        kafka_timeout_s=10.0,
    )
    with ServerThread(create_app(settings)) as server:
        yield server


def post(url: str, run_id: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/lineage", json=event(run_id), headers=AUTH, timeout=60)


def test_events_are_refused_while_kafka_is_down_and_accepted_once_it_is_back(
    kafka: StackHandle, gateway: ServerThread
) -> None:
    bootstrap = kafka.env["KAFKA_BOOTSTRAP"]
    before = post(gateway.url, str(uuid.uuid4()))
    assert before.status_code == 201, before.text

    kafka.stop("kafka")
    refused = post(gateway.url, str(uuid.uuid4()))
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "kafka" in refused.text.lower()

    kafka.start("kafka")
    start = asyncio.run(end_offsets(bootstrap, [LINEAGE_TOPIC]))
    accepted: list[str] = []

    def accepted_again() -> bool:
        run_id = str(uuid.uuid4())
        if post(gateway.url, run_id).status_code == 201:
            accepted.append(run_id)
        return bool(accepted)

    # The same process, no restart: accepted again once the broker answers.
    wait_until(accepted_again, timeout=120, every=1)
    (run_id,) = accepted

    def for_run(record: Any) -> bool:
        return bool(json.loads(record.value)["run"]["runId"] == run_id)

    # Accepted means stored: the event is on the topic.
    records = asyncio.run(read_from(bootstrap, start, for_run, 1, 30))
    assert [json.loads(r.value)["run"]["runId"] for r in records] == [run_id]
