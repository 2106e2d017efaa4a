"""Jaeger receives spans over OTLP (gRPC, HTTP) and from the `otel-spans` Kafka topic."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from lineagehub.topics import SPANS_TOPIC

if TYPE_CHECKING:
    from tests.conftest import StackHandle

pytestmark = pytest.mark.dataplane


async def _find_trace(
    query_url: str, trace_id: str, spans: int, wait_s: float = 30.0
) -> dict[str, Any]:
    """Poll Jaeger's query API until the trace holds `spans` spans (spans exported one by
    one can be queryable one at a time)."""
    deadline = time.monotonic() + wait_s
    async with httpx.AsyncClient(base_url=query_url, timeout=5.0) as client:
        while True:
            resp = await client.get(f"/api/traces/{trace_id}")
            if resp.status_code == 200:
                data = resp.json().get("data") or []
                if data and len(data[0].get("spans") or []) >= spans:
                    trace: dict[str, Any] = data[0]
                    return trace
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"trace {trace_id} not in Jaeger: {resp.status_code} {resp.text}"
                )
            await asyncio.sleep(0.3)


def _emit_with_sdk(exporter: SpanExporter, service: str) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("lineage-hub-tests")
    with tracer.start_as_current_span("pipeline-run") as root:
        with tracer.start_as_current_span("extract"):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_otlp_spans_are_queryable(stack: StackHandle, transport: str) -> None:
    service = f"otlp-{transport}-{uuid.uuid4().hex[:8]}"
    exporter: SpanExporter
    if transport == "grpc":
        endpoint = stack.env["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://")
        exporter = GrpcExporter(endpoint=endpoint, insecure=True, timeout=10)
    else:
        exporter = HttpExporter(
            endpoint=f"{stack.env['JAEGER_OTLP_HTTP_ENDPOINT']}/v1/traces", timeout=10
        )
    trace_id = await asyncio.to_thread(_emit_with_sdk, exporter, service)

    trace = await _find_trace(stack.env["JAEGER_QUERY_URL"], trace_id, spans=2)
    assert sorted(s["operationName"] for s in trace["spans"]) == ["extract", "pipeline-run"]
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert services == {service}


def _otlp_request(service: str, trace_id: bytes) -> ExportTraceServiceRequest:
    now = time.time_ns()
    root_id, child_id = os.urandom(8), os.urandom(8)
    spans = [
        Span(
            trace_id=trace_id,
            span_id=root_id,
            name="pipeline-run",
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=now - 5_000_000,
            end_time_unix_nano=now,
            attributes=[KeyValue(key="lineagehub.stage", value=AnyValue(string_value="all"))],
        ),
        Span(
            trace_id=trace_id,
            span_id=child_id,
            parent_span_id=root_id,
            name="transform",
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=now - 4_000_000,
            end_time_unix_nano=now - 1_000_000,
        ),
    ]
    resource = ProtoResource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


async def test_kafka_otlp_proto_spans_are_queryable(stack: StackHandle) -> None:
    service = f"kafka-{uuid.uuid4().hex[:8]}"
    trace_id = os.urandom(16)
    payload = _otlp_request(service, trace_id).SerializeToString()

    producer = AIOKafkaProducer(bootstrap_servers=stack.env["KAFKA_BOOTSTRAP"], acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(SPANS_TOPIC, payload, key=trace_id.hex().encode())
    finally:
        await producer.stop()

    trace = await _find_trace(stack.env["JAEGER_QUERY_URL"], trace_id.hex(), spans=2, wait_s=45.0)
    by_name = {s["operationName"]: s for s in trace["spans"]}
    assert set(by_name) == {"pipeline-run", "transform"}
    child_refs = by_name["transform"]["references"]
    assert [r["spanID"] for r in child_refs] == [by_name["pipeline-run"]["spanID"]]
    tags = {t["key"]: t["value"] for t in by_name["pipeline-run"]["tags"]}
    assert tags["lineagehub.stage"] == "all"
