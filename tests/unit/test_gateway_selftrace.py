"""The gateway's own spans, with the SDK's in-memory exporter and the real app.

A request's server span continues the caller's W3C `traceparent`; a PipelineRun created
over HTTP records the request span's context for the operator to parent the run to; a
lineage event's Kafka records carry it (their headers, against a real broker, are in
tests/integration/test_gateway_selftrace.py); scrapes and the console's files make no
spans; the access log line names the request span.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import cast

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Send

from gateway.app import create_app
from gateway.logs import ACCESS_LOGGER, JsonFormatter
from gateway.observed import ObservedRequests
from gateway.tracing import current_context_carrier, kafka_headers
from lineagehub.telemetry.spans import RUN_TRACEPARENT_ANNOTATION
from tests.gateway_traced import traced
from tests.unit.test_gateway_runs import SPEC, MemoryRuns, W, settings

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def runs() -> MemoryRuns:
    return MemoryRuns()


@pytest.fixture
def client(spans: InMemorySpanExporter, runs: MemoryRuns) -> Iterator[TestClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings(), publisher=None, runs=runs, tracer_provider=provider)
    with TestClient(app) as c:
        yield c


def _server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def test_a_created_run_continues_the_callers_trace(
    client: TestClient, spans: InMemorySpanExporter, runs: MemoryRuns
) -> None:
    r = client.post("/api/v1/pipeline/run", json=SPEC, headers={**W, "traceparent": TRACEPARENT})
    assert r.status_code == 201, r.text
    (span,) = _server_spans(spans)
    assert span.name == "POST /api/v1/pipeline/run"
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == CALLER_TRACE
    assert f"{span.parent.span_id:016x}" == CALLER_SPAN and span.parent.is_remote
    (created,) = runs.objects.values()
    annotation = created["metadata"]["annotations"][RUN_TRACEPARENT_ANNOTATION]
    flags = span.context.trace_flags
    assert flags.sampled
    assert annotation == f"00-{CALLER_TRACE}-{span.context.span_id:016x}-{flags:02x}"


def test_a_run_without_a_traceparent_starts_at_the_gateways_span(
    client: TestClient, spans: InMemorySpanExporter, runs: MemoryRuns
) -> None:
    malformed = {**W, "traceparent": "00-not-a-trace-01"}
    assert client.post("/api/v1/pipeline/run", json=SPEC, headers=malformed).status_code == 201
    (span,) = _server_spans(spans)
    assert span.parent is None and span.context is not None
    (created,) = runs.objects.values()
    trace_id, span_id = f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"
    flags = f"{span.context.trace_flags:02x}"
    assert created["metadata"]["annotations"][RUN_TRACEPARENT_ANNOTATION] == (
        f"00-{trace_id}-{span_id}-{flags}"
    )


def test_an_untraced_gateway_hands_on_the_callers_traceparent(runs: MemoryRuns) -> None:
    app = create_app(settings(), publisher=None, runs=runs)
    with TestClient(app) as c:
        r = c.post("/api/v1/pipeline/run", json=SPEC, headers={**W, "traceparent": TRACEPARENT})
        assert r.status_code == 201
        bad = {**W, "traceparent": "zz"}
        assert c.post("/api/v1/pipeline/run", json=SPEC, headers=bad).status_code == 201
    annotations = [o["metadata"]["annotations"] for o in runs.objects.values()]
    assert [a.get(RUN_TRACEPARENT_ANNOTATION) for a in annotations] == [TRACEPARENT, None]


def test_scrapes_probes_and_console_files_are_not_traced(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics?x=1").status_code == 200
    client.get("/console/static/app.js")
    client.get("/console/lib/none.js")
    assert spans.get_finished_spans() == ()
    client.get("/api/v1/metrics", headers=W)  # the pipelines' metrics API is traced
    assert [s.name for s in _server_spans(spans)] == ["GET /api/v1/metrics"]


def test_the_access_log_line_names_the_request_span(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        client.get("/api/v1/pipeline/runs", headers={**W, "traceparent": TRACEPARENT})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    (line,) = [json.loads(x) for x in out.getvalue().splitlines()]
    (span,) = _server_spans(spans)
    assert span.context is not None
    assert line["trace_id"] == CALLER_TRACE
    assert line["span_id"] == f"{span.context.span_id:016x}"
    assert line["route"] == "/api/v1/pipeline/runs"


def test_run_again_continues_the_callers_trace_too(
    client: TestClient, spans: InMemorySpanExporter, runs: MemoryRuns
) -> None:
    first = client.post("/api/v1/pipeline/run", json=SPEC, headers=W).json()["name"]
    spans.clear()
    path = f"/api/v1/pipeline/run/{first}/again?namespace=team-a"
    again = client.post(path, headers={**W, "traceparent": TRACEPARENT})
    assert again.status_code == 201, again.text
    (span,) = _server_spans(spans)
    assert span.context is not None and span.parent is not None
    assert f"{span.parent.span_id:016x}" == CALLER_SPAN
    created = runs.objects[("team-a", again.json()["name"])]
    annotation = created["metadata"]["annotations"][RUN_TRACEPARENT_ANNOTATION]
    assert annotation.split("-")[1:3] == [CALLER_TRACE, f"{span.context.span_id:016x}"]


def test_framework_routes_are_named_by_their_template(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    client.get("/no/such/page")
    names = [s.name for s in _server_spans(spans)]
    assert names == ["GET /openapi.json", "GET /docs", "GET"]
    routes = [
        s.attributes.get("http.route") if s.attributes else None for s in _server_spans(spans)
    ]
    assert routes == ["/openapi.json", "/docs", None]


def test_a_failing_handler_leaves_an_error_span(spans: InMemorySpanExporter) -> None:
    runs = MemoryRuns()
    runs.fail = RuntimeError("the store broke")  # type: ignore[assignment]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings(), publisher=None, runs=runs, tracer_provider=provider)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/api/v1/pipeline/run", json=SPEC, headers=W).status_code == 500
        assert c.get("/api/v1/pipeline/run/missing", headers=W).status_code == 404
    failed, missing = _server_spans(spans)
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert missing.status.status_code is StatusCode.UNSET
    assert missing.attributes is not None
    assert missing.attributes["http.response.status_code"] == 404
    assert missing.attributes["http.route"] == "/api/v1/pipeline/run/{name}"


def test_an_unsampled_request_records_nothing_and_hands_on_the_callers_context(
    spans: InMemorySpanExporter, runs: MemoryRuns
) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings(), publisher=None, runs=runs, tracer_provider=provider)
    with TestClient(app) as c:
        r = c.post("/api/v1/pipeline/run", json=SPEC, headers={**W, "traceparent": TRACEPARENT})
        assert r.status_code == 201
    assert spans.get_finished_spans() == ()
    (created,) = runs.objects.values()
    assert created["metadata"]["annotations"][RUN_TRACEPARENT_ANNOTATION] == TRACEPARENT


def test_kafka_headers_carry_only_a_sampled_context() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("request") as span:
        context = span.get_span_context()
        (header,) = kafka_headers()
        assert header == (
            "traceparent",
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode(),
        )
        assert (
            dict(kafka_headers())["traceparent"].decode()
            == current_context_carrier()["traceparent"]
        )
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t")
    with unsampled.start_as_current_span("request"):
        assert kafka_headers() == []
    assert kafka_headers() == []  # no span at all


def _traced(app: object, spans: InMemorySpanExporter) -> ObservedRequests:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return traced(cast(ASGIApp, app), provider)


def _scope() -> dict[str, object]:
    return {"type": "http", "method": "GET", "path": "/api/v1/pipeline/run/stream", "headers": []}


async def _nothing_received() -> dict[str, object]:
    return {"type": "http.disconnect"}


def test_a_stream_that_breaks_after_its_200_is_an_error_span(
    spans: InMemorySpanExporter,
) -> None:
    """An SSE stream whose generator fails mid-way already sent 200: still a failure."""

    async def breaking_stream(scope: object, receive: object, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        raise RuntimeError("the watch broke")

    sent: list[Message] = []

    async def collect(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError):
        asyncio.run(_traced(breaking_stream, spans)(_scope(), _nothing_received, collect))
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert [e.name for e in span.events] == ["exception"]


def test_a_client_leaving_is_not_recorded_as_a_500(spans: InMemorySpanExporter) -> None:
    async def left(scope: object, receive: object, send: Send) -> None:
        raise asyncio.CancelledError

    async def collect(message: Message) -> None:
        raise AssertionError("nothing is sent for a cancelled request")

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_traced(left, spans)(_scope(), _nothing_received, collect))
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert "http.response.status_code" not in span.attributes
    assert span.attributes["error.type"] == "cancelled"
