"""The gateway's own trace context on a real Kafka: a lineage event's record carries the
request span's `traceparent` in its headers, and the self-trace exporter puts spans on
`otel-spans` as the OTLP protobuf the otel consumer reads."""

from __future__ import annotations

import asyncio
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

from consumers.samples import lineage_event
from consumers.testkit import end_offsets, read_from
from gateway.app import create_app
from gateway.serve import ServerThread
from lineagehub.selftrace import KafkaSpanExporter
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
