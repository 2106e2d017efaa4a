"""The events counter (`lineagehub_gateway_lineage_events_total{result}`) and the publish
histogram after a mixed batch: each item counted once under its own outcome, as the
answer's per-item statuses say (a batch adds its counts once per outcome, not per
event, so the totals are what is checked)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient

from consumers.samples import lineage_event
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from tests import promparse
from tests.pipelined_producer import PipelinedStandIn

TOKEN = "ingest-counts-writer-token-0001"
EVENTS = "lineagehub_gateway_lineage_events_total"


class FailingKeyProducer(PipelinedStandIn):
    """Acknowledges every record at once except those of `failing_key`, which fail."""

    def __init__(self, failing_key: str) -> None:
        self.failing_key = failing_key

    async def enqueue(self, topic: str, key: str, value: bytes) -> asyncio.Future[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if key == self.failing_key:
            ack.set_exception(ConnectionError("NOT_ENOUGH_REPLICAS: 1 of 3 in sync"))
        else:
            ack.set_result(None)
        return ack


def test_a_mixed_batch_counts_each_item_once_under_its_outcome() -> None:
    failing = str(uuid.uuid4())
    batch = [
        lineage_event(str(uuid.uuid4()), "START"),
        lineage_event(failing, "START"),
        {"eventType": "START"},
        lineage_event(str(uuid.uuid4()), "COMPLETE"),
        lineage_event(failing, "COMPLETE"),
        7,
        lineage_event(str(uuid.uuid4()), "START"),
    ]
    settings = Settings(tokens=parse_tokens(f"{TOKEN}:lineage:write"), rate_per_s=0)
    app = create_app(settings, publisher=FailingKeyProducer(failing), runs=None, metrics_store=None)
    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/lineage", json=batch, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        text = client.get("/metrics").text
    assert answer.status_code == 200
    statuses = Counter(item["status"] for item in answer.json()["results"])
    assert statuses == {201: 3, 503: 2, 400: 2}
    assert promparse.value(text, EVENTS, result="accepted") == 3
    assert promparse.value(text, EVENTS, result="unavailable") == 2
    assert promparse.value(text, EVENTS, result="invalid") == 2
    assert promparse.value(text, "lineagehub_gateway_kafka_publish_seconds_count") == 3
