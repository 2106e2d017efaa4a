"""The gateway's own trace context on a real Kafka: a lineage event's record carries the
request span's `traceparent` in its headers, the self-trace exporter puts spans on
`otel-spans` as the OTLP protobuf the otel consumer reads, and the lineage
warehouse writer's store span joins the caller's trace (Jaeger shows the three as
one)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from consumers.cli import WAREHOUSE_SERVICE
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer, OtelSettings
from consumers.samples import lineage_event
from consumers.testkit import create_topics, end_offsets, read_from, unique, wait_drained
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from gateway.app import create_app
from gateway.serve import ServerThread
from lineagehub import selftrace
from lineagehub.selftrace import KafkaSpanExporter
from lineagehub.store_spans import batch_store_spans
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from tests.integration.test_gateway import AUTH, settings

pytestmark = [pytest.mark.dataplane]

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"


async def _keyed(
    bootstrap: str, start: dict[TopicPartition, int], key: str, within: float
) -> list[Any]:
    """The first record with `key` from the `start` offsets on."""
    return await read_from(bootstrap, start, lambda r: r.key == key.encode(), 1, within)


def test_a_lineage_record_carries_the_request_spans_context(stack: Any) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings(stack.env), runs=None, metrics_store=None, tracer_provider=provider)
    run_id = str(uuid.uuid4())
    start = asyncio.run(end_offsets(bootstrap, [LINEAGE_TOPIC]))
    with ServerThread(app) as server:
        r = httpx.post(
            f"{server.url}/api/v1/lineage",
            json=lineage_event(run_id),
            headers={**AUTH, "traceparent": TRACEPARENT},
            timeout=30,
        )
        assert r.status_code == 201, r.text
    (record,) = asyncio.run(_keyed(bootstrap, start, run_id, within=30))
    (span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert span.context is not None and f"{span.context.trace_id:032x}" == CALLER_TRACE
    headers = dict(record.headers)
    flags = f"{span.context.trace_flags:02x}"
    assert (
        headers["traceparent"] == f"00-{CALLER_TRACE}-{span.context.span_id:016x}-{flags}".encode()
    )


def test_self_trace_spans_reach_otel_spans_as_otlp_protobuf(stack: Any) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    exporter = KafkaSpanExporter(bootstrap)
    provider = TracerProvider(resource=Resource.create({"service.name": "selftrace-test"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    start = asyncio.run(end_offsets(bootstrap, [SPANS_TOPIC]))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent") as parent, tracer.start_as_current_span("child"):
        pass
    trace_id = f"{parent.get_span_context().trace_id:032x}"
    provider.shutdown()  # flushes the batch, then stops the exporter's producer
    (record,) = asyncio.run(_keyed(bootstrap, start, trace_id, within=30))
    request = ExportTraceServiceRequest.FromString(record.value)
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "selftrace-test"
    got = {s.name: s for scope in resource_spans.scope_spans for s in scope.spans}
    assert set(got) == {"parent", "child"}
    assert got["child"].parent_span_id == got["parent"].span_id
    assert got["parent"].trace_id.hex() == trace_id


def _jaeger_trace(query_url: str, trace_id: str, wanted: set[str], within: float) -> Any:
    """The trace as Jaeger's query API answers it, once every operation in `wanted` is
    among its spans."""
    deadline = time.monotonic() + within
    found: Any = None
    while time.monotonic() < deadline:
        reply = httpx.get(f"{query_url}/api/traces/{trace_id}", timeout=10)
        if reply.status_code == 200 and reply.json().get("data"):
            found = reply.json()["data"][0]
            if wanted <= {s["operationName"] for s in found["spans"]}:
                return found
        time.sleep(0.5)  # polling Jaeger's query API, not synchronisation
    raise AssertionError(f"trace {trace_id} lacks {wanted} in Jaeger: {found}")


async def test_a_lineage_event_posted_with_a_traceparent_is_stored_in_the_same_trace(
    env: dict[str, str], chdb: ChdbBackend
) -> None:
    """The caller's span -> the gateway's request span -> the lineage warehouse writer's
    store span, each exported by its service onto `otel-spans`, found in Jaeger as one
    trace; the event is in the warehouse (chdb)."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    topic = unique("openlineage-events")
    await create_topics(bootstrap, [topic])
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    run_id = str(uuid.uuid4())
    gateway_provider = selftrace.tracer_provider("lineage-hub-gateway", bootstrap, {})
    writer_spans = selftrace.span_recorder(WAREHOUSE_SERVICE, bootstrap, {})
    assert gateway_provider is not None and writer_spans is not None
    app = create_app(
        settings(env, lineage_topic=topic),
        runs=None,
        metrics_store=None,
        tracer_provider=gateway_provider,  # shut down (flushed) with the app
    )
    with ServerThread(app) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(
                f"{server.url}/api/v1/lineage",
                json=lineage_event(run_id, "COMPLETE"),
                headers={**AUTH, "traceparent": f"00-{caller_trace}-{caller_span}-01"},
            )
        assert reply.status_code == 201, reply.text
    writer = OtelConsumer(
        OtelSettings(
            bootstrap=bootstrap,
            group=f"{topic}-warehouse",
            topics=(topic,),
            max_batch_wait=0.3,
            client_id="test-warehouse",
            name="warehouse",
        ),
        chdb,
        decoders={topic: decode_lineage},
        schema=LINEAGE_SCHEMA,
    )
    writer.tracer = writer_spans
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        await wait_drained(bootstrap, writer.s.group, [topic], within=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    stored = f"SELECT count() AS n FROM otel.lineage_events WHERE RunId = '{run_id}'"
    rows = await chdb.query(stored)
    assert [r["n"] for r in rows] == [1]
    await asyncio.to_thread(writer_spans.shutdown)  # exports the store span
    store, request = f"store {topic}", "POST /api/v1/lineage"
    trace = await asyncio.to_thread(
        _jaeger_trace, env["JAEGER_QUERY_URL"], caller_trace, {store, request}, 60
    )
    by_name = {s["operationName"]: s for s in trace["spans"]}

    def parent(span: Any) -> list[str]:
        return [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]

    assert parent(by_name[request]) == [caller_span]
    assert parent(by_name[store]) == [by_name[request]["spanID"]]
    service = {
        name: trace["processes"][s["processID"]]["serviceName"] for name, s in by_name.items()
    }
    assert service == {request: "lineage-hub-gateway", store: WAREHOUSE_SERVICE}
    tags = {t["key"]: t["value"] for t in by_name[store]["tags"]}
    assert tags["messaging.destination.name"] == topic
    assert tags["lineagehub.store"] == "clickhouse"


class _Record:
    """The parts of a consumed record a batch's store spans read."""

    def __init__(self, offset: int, headers: tuple[tuple[str, bytes], ...]) -> None:
        self.topic, self.partition, self.offset, self.headers = LINEAGE_TOPIC, 2, offset, headers


def test_a_stored_batchs_spans_are_on_kafka_once_force_flush_returns(stack: Any) -> None:
    """The writer's store spans of one batch, each a child of its record's producer span,
    in one OTLP record on the spans topic, acknowledged by the broker before
    `force_flush` returns (librdkafka sends them from its own threads)."""
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    topic = unique("selftrace-spans")
    asyncio.run(create_topics(bootstrap, [topic]))
    recorder = selftrace.span_recorder(WAREHOUSE_SERVICE, bootstrap, {selftrace.TOPIC_ENV: topic})
    assert recorder is not None
    parents = {uuid.uuid4().hex: uuid.uuid4().hex[:16] for _ in range(3)}
    unsampled = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00".encode()
    records = [
        _Record(10 + i, (("traceparent", f"00-{trace}-{span}-01".encode()),))
        for i, (trace, span) in enumerate(parents.items())
    ]
    records += [_Record(20, ()), _Record(21, (("traceparent", unsampled),))]
    made = batch_store_spans(
        recorder, "store x", records, time.time_ns(), {"lineagehub.store": "ch"}
    )
    assert made == 3
    recorder.force_flush()
    ends = asyncio.run(end_offsets(bootstrap, [topic]))
    assert sum(ends.values()) == 1  # acknowledged already: one batch, one record
    (record,) = asyncio.run(read_from(bootstrap, dict.fromkeys(ends, 0), lambda r: True, 1, 30))
    recorder.shutdown()
    request = ExportTraceServiceRequest.FromString(record.value)
    (resource_spans,) = request.resource_spans
    spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
    got = {s.trace_id.hex(): s.parent_span_id.hex() for s in spans}
    assert got == parents and len(spans) == 3
    assert record.key == next(iter(parents)).encode()  # the first span's trace id
    offsets = [
        {a.key: a.value.string_value for a in s.attributes}["messaging.kafka.offset"] for s in spans
    ]
    assert offsets == ["10", "11", "12"]
