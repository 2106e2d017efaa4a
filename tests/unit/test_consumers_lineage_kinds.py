"""The lineage consumer forwards every event kind Marquez stores, and never crashes on input.

Marquez 0.43+ takes DatasetEvents and JobEvents at `POST /api/v1/lineage` (its
OpenLineageResource.create dispatches on the decoded class), so they are posted like
RunEvents instead of being dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from consumers.dlq import DeadLetterQueue, Headers, Rejection
from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.lineage.validate import ValidEvent, validate
from consumers.retry import Backoff
from lineagehub.openlineage_schema import EventKind
from tests.helpers import wait_until_async
from tests.http_answers import Answering

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/"
TP = TopicPartition("openlineage-events", 0)  # `Rec`'s topic and partition


@dataclass
class Rec:
    value: bytes | None
    offset: int = 0
    key: bytes | None = None
    topic: str = "openlineage-events"
    partition: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes | None, Headers]] = field(default_factory=list)

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Headers | None = None,
    ) -> None:
        self.sent.append((topic, value, key, headers or []))


def dataset_event(name: str, description: str) -> bytes:
    return json.dumps(
        {
            "eventTime": "2025-01-02T03:04:05",
            "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/client/python",
            "schemaURL": SPEC + "DatasetEvent",
            "dataset": {
                "namespace": "s3://lake",
                "name": name,
                "facets": {"acme": {"description": description}},
            },
        }
    ).encode()


def job_event(name: str) -> bytes:
    return json.dumps(
        {
            "eventTime": "2025-01-02T03:04:05Z",
            "producer": "p",
            "schemaURL": SPEC + "JobEvent",
            "job": {"namespace": "acme", "name": name},
            "inputs": [{"namespace": "s3://lake", "name": "a"}],
            "outputs": [{"namespace": "s3://lake", "name": "b"}],
        }
    ).encode()


def consumer(marquez: Answering, lanes: int = 8) -> tuple[LineageConsumer, FakeProducer]:
    settings = LineageSettings(
        bootstrap="unused",
        marquez_url=marquez.url,
        lanes=lanes,
        backoff=Backoff(base=0.001, factor=2, cap=0.01),
    )
    c = LineageConsumer(settings)
    producer = FakeProducer()
    c._dlq = DeadLetterQueue(producer, "lineage")
    return c, producer


def test_static_events_are_valid_with_their_kind_and_key() -> None:
    verdict = validate(dataset_event("orders", "x"))
    assert isinstance(verdict, ValidEvent)
    assert (verdict.kind, verdict.key, verdict.run_id) == (
        EventKind.DATASET,
        "dataset:s3://lake/orders",
        "",
    )
    verdict = validate(job_event("daily"))
    assert isinstance(verdict, ValidEvent)
    assert (verdict.kind, verdict.key) == (EventKind.JOB, "job:acme/daily")


async def test_dataset_and_job_events_are_posted_not_dead_lettered() -> None:
    posted: list[bytes] = []

    def handler(method: str, body: bytes) -> tuple[int, str]:
        posted.append(body)
        return 201, "{}"

    async with Answering(handler) as marquez:
        c, producer = consumer(marquez)
        bodies = [dataset_event("orders", "x"), job_event("daily")]
        for body in bodies:
            await c._handle(Rec(value=body), validate(body))
        await c.marquez.aclose()
    assert posted == bodies  # the bytes as produced
    assert producer.sent == []
    assert c.stats.get("posted", event_type="DatasetEvent") == 1
    assert c.stats.get("posted", event_type="JobEvent") == 1


async def test_unkeyed_static_events_of_one_dataset_stay_in_order() -> None:
    # Without a Kafka key, a static event's lane is chosen by its own key, so two
    # events of one dataset reach Marquez in offset order even when the first is slow.
    order: list[str] = []

    async def handler(method: str, body: bytes) -> tuple[int, str]:
        description = json.loads(body)["dataset"]["facets"]["acme"]["description"]
        if description == "first":
            await asyncio.sleep(0.2)
        order.append(description)
        return 201, "{}"

    async with Answering(handler) as marquez:
        c, producer = consumer(marquez, lanes=64)
        first = Rec(value=dataset_event("orders", "first"), offset=0)
        await c._dispatch({TP: [first, Rec(value=dataset_event("orders", "second"), offset=1)]})
        try:
            await wait_until_async(lambda: len(order) == 2, within=30)
        finally:
            for part in list(c._parts.values()):
                await c._stop_workers(part)
            await c.marquez.aclose()
    assert order == ["first", "second"]
    assert producer.sent == []


async def test_records_that_used_to_crash_the_consumer_are_handled() -> None:
    # A 5000-digit integer raised ValueError out of json.loads; a lone surrogate in a
    # run id without a Kafka key could not be encoded as the lane key.
    posted: list[bytes] = []

    def handler(method: str, body: bytes) -> tuple[int, str]:
        posted.append(body)
        return 201, "{}"

    marquez = await Answering(handler).__aenter__()
    c, producer = consumer(marquez)
    huge = b'{"eventTime": "2025-01-02T03:04:05Z", "x": ' + b"7" * 5000 + b"}"
    surrogate = json.dumps(
        {
            "eventTime": "2025-01-02T03:04:05Z",
            "eventType": "START",
            "producer": "p",
            "run": {"runId": "run-\ud800"},
            "job": {"namespace": "ns", "name": "job"},
        }
    ).encode()  # ensure_ascii: the bytes hold the escape \ud800
    assert b"\\ud800" in surrogate
    huge_verdict = validate(huge)
    assert isinstance(huge_verdict, Rejection) and huge_verdict.reason == "invalid_json"
    assert "5000 digits" in huge_verdict.detail
    await c._dispatch({TP: [Rec(value=huge, offset=0), Rec(value=surrogate, offset=1)]})
    try:
        await wait_until_async(lambda: producer.sent and posted, within=30)
    finally:
        for part in list(c._parts.values()):
            await c._stop_workers(part)
        await c.marquez.aclose()
        await marquez.__aexit__()
    ((_, value, _, headers),) = producer.sent
    assert value == huge and dict(headers)["dlq.reason"] == b"invalid_json"
    # Marquez's parser takes the escape, so the consumer forwards the event unchanged.
    assert posted == [surrogate]


def test_validate_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    verdict = validate(deep)
    assert isinstance(verdict, Rejection) and verdict.reason == "invalid_json"
    not_object = validate(b'"just a string"')
    assert isinstance(not_object, Rejection) and not_object.detail.startswith("$: ")

    # A bug below validate() dead-letters the record instead of stopping the loop.
    def broken(event: object, kind: EventKind = EventKind.RUN) -> list[Any]:
        raise KeyError("bug")

    monkeypatch.setattr("consumers.lineage.validate.schema_errors", broken)
    verdict = validate(job_event("daily"))
    assert isinstance(verdict, Rejection) and verdict.reason == "validator_error"
    assert "KeyError" in verdict.detail
