"""The lineage consumer's per-record paths: a fetched batch queued once and in order,
`/healthz` naming an event that keeps failing until it is stored, and a store span
exactly for the records whose headers carry a trace.

Against a real HTTP server on loopback (`tests.http_answers`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence

from aiokafka import TopicPartition

from consumers.aio import wait_until
from consumers.lineage.validate import validate
from consumers.samples import lineage_bytes
from lineagehub.otlp_spans import OtlpSpan
from lineagehub.selftrace import remote_parent_sampling
from lineagehub.store_spans import SpanRecorder
from lineagehub.topics import LINEAGE_TOPIC
from tests.http_answers import Answering
from tests.unit.test_consumers_lineage_kinds import Rec, consumer
from tests.unit.test_consumers_lineage_order import stop
from tests.unit.test_consumers_lineage_unit import WAIT, consumer_with

TP = TopicPartition(LINEAGE_TOPIC, 1)


async def test_a_refetched_batch_queues_only_the_records_not_queued_yet() -> None:
    """After a reset the fetcher hands back records already queued: each offset is
    POSTed once, a run's events in offset order, and the commit point reaches the end."""
    runs = [str(uuid.uuid4()) for _ in range(3)]
    values = [
        lineage_bytes(r, kind, namespace="ns", job="j")
        for r in runs
        for kind in ("START", "COMPLETE")
    ]
    arrived: list[tuple[str, str]] = []
    all_in = asyncio.Event()

    def handler(method: str, body: bytes) -> tuple[int, str]:
        event = json.loads(body)
        arrived.append((event["run"]["runId"], event["eventType"]))
        if len(arrived) == len(values):
            all_in.set()
        return 201, "{}"

    def rec(offset: int) -> Rec:
        # No Kafka key: the event's own key (its run id) orders it.
        return Rec(value=values[offset], partition=TP.partition, offset=offset, key=None)

    async with Answering(handler) as marquez:
        c, producer = consumer(marquez)
        try:
            await c._dispatch({TP: [rec(0), rec(1), rec(2), rec(3)]})
            await c._dispatch({TP: [rec(2), rec(3), rec(4), rec(5)]})  # refetched from 2
            await asyncio.wait_for(all_in.wait(), WAIT)
            assert await wait_until(lambda: not c.tracker.total_in_flight(), WAIT)
        finally:
            await stop(c)
    assert sorted(arrived) == sorted({(r, k) for r in runs for k in ("START", "COMPLETE")})
    assert len(arrived) == len(values)  # none twice
    for run in runs:
        assert [k for r, k in arrived if r == run] == ["START", "COMPLETE"]
    assert c.tracker.to_commit() == {TP: len(values)}
    assert c.stats.get("processed") == len(values) and not producer.sent


async def test_an_event_failing_alone_is_named_on_healthz_until_it_is_stored() -> None:
    """A 5xx for one event (the gate stays up) degrades `/healthz` under that event's
    name once it has failed `breaker_threshold` times; storing it clears exactly that."""
    body = lineage_bytes(str(uuid.uuid4()))
    failures = 0
    release = asyncio.Event()
    degraded = asyncio.Event()

    async def handler(method: str, got: bytes) -> tuple[int, str]:
        nonlocal failures
        if failures < 5:
            failures += 1
            return 500, "boom"
        degraded.set()
        await release.wait()
        return 201, "{}"

    async with Answering(handler) as marquez:
        c, producer = consumer_with(marquez)
        c.s.max_server_error_attempts = 100  # never dead-lettered here
        c.health.degrade("kafka", "another source, left alone")
        record = Rec(value=body, partition=3, offset=77)
        task = asyncio.create_task(c._handle(record, validate(body)))
        try:
            await asyncio.wait_for(degraded.wait(), WAIT)
            name = f"lineage {record.topic}/3@77"
            assert c.health.reasons[name].startswith("an event keeps failing: HTTP 500")
            release.set()
            await asyncio.wait_for(task, WAIT)
        finally:
            release.set()
            await c.marquez.aclose()
    assert c.health.reasons == {"kafka": "another source, left alone"}
    assert c.stats.get("posted") == 1 and c.gate.is_up and not producer.sent


class Kept:
    def __init__(self) -> None:
        self.spans: list[OtlpSpan] = []

    def add(self, span: OtlpSpan) -> None:
        self.spans.append(span)

    def add_all(self, spans: Sequence[OtlpSpan]) -> None:
        self.spans.extend(spans)


async def test_a_store_span_is_made_for_a_record_carrying_a_trace_and_for_no_other() -> None:
    trace, parent = 0xABC, 0x1234
    traced = [("traceparent", f"00-{trace:032x}-{parent:016x}-01".encode())]
    bodies = [lineage_bytes(str(uuid.uuid4())) for _ in range(3)]
    async with Answering(lambda method, body: (201, "{}")) as marquez:
        c, _ = consumer_with(marquez)
        kept = Kept()
        c.tracer = SpanRecorder("c", remote_parent_sampling({}), kept)  # type: ignore[arg-type]
        for offset, (body, headers) in enumerate(
            zip(bodies, [traced, [], [("x", b"y")]], strict=True)
        ):
            await c._handle(Rec(value=body, offset=offset, headers=headers), validate(body))
        await c.marquez.aclose()
    (span,) = kept.spans
    assert (span.trace_id, span.parent_span_id) == (trace, parent)
    assert span.name == f"store {LINEAGE_TOPIC}"
    assert span.attributes["messaging.kafka.offset"] == "0"
    assert span.attributes["lineagehub.store"] == "marquez"
    assert c.stats.get("posted") == 3
