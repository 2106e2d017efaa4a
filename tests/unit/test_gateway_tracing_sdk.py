"""The gateway's request spans, recorded without the SDK's spans, against what the SDK
records for the same requests: the middleware runs each request twice, once on its
own path and once forced onto the SDK's tracer, with the same ids drawn in the same
order, and every part of the finished span (and what the handler saw as current: its
record headers, log ids and a run's traceparent) must match, down to the OTLP bytes."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from starlette.types import Message, Receive, Scope, Send

from gateway.tracing import kafka_headers, run_traceparent
from lineagehub.otlp_spans import encode_readable
from lineagehub.selftrace import KafkaSpanExporter, SelfTraceProvider, caller_decision
from lineagehub.span_batches import BatchSettings
from lineagehub.tracelog import current_span_ids
from tests.gateway_traced import spans_of, traced

CALLER_TRACE = 0x4BF92F3577B34DA623CE929D0E0E4736  # kept by a ratio of 0.5
CALLER_SPAN = 0x00F067AA0BA902B7
STATE = "vendor=abc,other=1"


class SeededIds(RandomIdGenerator):
    """The same ids for each of the two runs. The SDK draws a span id for a root it
    drops and the middleware does not, so a span id follows from the last trace id
    drawn and the span ids drawn since, not from a count of all."""

    def __init__(self) -> None:
        self.trace_ids = 0
        self.since = 0

    def generate_trace_id(self) -> int:
        self.trace_ids += 1
        self.since = 0
        return random.Random(self.trace_ids).getrandbits(128) or 1

    def generate_span_id(self) -> int:
        self.since += 1
        return random.Random(self.trace_ids << 16 | self.since).getrandbits(64) or 1


Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class Seen(list[tuple[list[tuple[str, bytes]], dict[str, str], str | None, TraceFlags]]):
    """What the handler saw as current, a request at a time."""


def handler(status: int | None, fail: type[BaseException] | None, seen: Seen) -> Handler:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = SimpleNamespace(path="/api/v1/lineage/{kind}")
        seen.append(
            (
                kafka_headers(),
                current_span_ids(),
                run_traceparent({}),
                trace.get_current_span().get_span_context().trace_flags,
            )
        )
        if status is not None:
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
        if fail is not None:
            raise fail("the store is gone")

    return app


class KafkaRecords(KafkaSpanExporter):
    """The Kafka exporter with its producer replaced by a list of the records sent."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def send(self, key: str, payload: bytes) -> bool:
        self.records.append((key, payload))
        return True

    def shutdown(self) -> None:
        return None


RESOURCE = Resource({"service.name": "lineagehub-gateway"})


def plain_provider(sampler: Sampler, spans: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(sampler=sampler, id_generator=SeededIds(), resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider


def run(
    sampler: Sampler,
    headers: list[tuple[bytes, bytes]],
    status: int | None,
    fail: type[BaseException] | None,
    *,
    sdk: bool,
    provider: TracerProvider | None = None,
) -> tuple[list[ReadableSpan], Seen]:
    spans, seen = InMemorySpanExporter(), Seen()
    provider = provider or plain_provider(sampler, spans)
    app = traced(handler(status, fail, seen), provider)
    if sdk:
        spans_of(app).roots = None  # what a sampler the middleware does not know gets
    else:
        assert spans_of(app).roots is not None

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    async def serve() -> None:
        for path in [f"/api/v1/lineage/{n}" for n in range(8)]:
            scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
            with contextlib.suppress(RuntimeError, asyncio.CancelledError):
                await app(scope, receive, send)

    asyncio.run(serve())
    provider.shutdown()
    return list(spans.get_finished_spans()), seen


def comparable(span: ReadableSpan) -> dict[str, object]:
    """Every part of a finished span but its clock readings."""
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind,
        "context": (span.context.trace_id, span.context.span_id, span.context.trace_flags),
        "is_remote": span.context.is_remote,
        "trace_state": list(span.context.trace_state.items()),
        "parent": None if span.parent is None else (span.parent.span_id, span.parent.is_remote),
        "attributes": list((span.attributes or {}).items()),  # in the SDK's order
        "events": [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"})
            for e in span.events
        ],
        "stacktrace_tail": [
            str((e.attributes or {}).get("exception.stacktrace", "")).splitlines()[-1:]
            for e in span.events
        ],
        "status": (span.status.status_code, span.status.description),
        "resource": dict(span.resource.attributes),
        "scope": span.instrumentation_scope,
        "links": list(span.links),
        "times_ordered": span.start_time is not None
        and span.end_time is not None
        and span.start_time <= span.end_time,
    }


def same_clock(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """`spans` with every clock reading set to fixed values, for byte comparison."""
    out = []
    for span in spans:
        out.append(
            ReadableSpan(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=span.resource,
                attributes=span.attributes,
                events=[
                    type(e)(e.name, {**(e.attributes or {}), "exception.stacktrace": ""}, 7)
                    for e in span.events
                ],
                kind=span.kind,
                status=span.status,
                start_time=5,
                end_time=6,
                instrumentation_scope=span.instrumentation_scope,
            )
        )
    return out


SAMPLERS = {
    "parent-based ratio 0.5": ParentBasedTraceIdRatio(0.5),
    "default on": DEFAULT_ON,
    "ratio 1": TraceIdRatioBased(1.0),
    "parent-based, remote parents by ratio": ParentBased(
        ALWAYS_ON,
        remote_parent_sampled=TraceIdRatioBased(0.5),
        remote_parent_not_sampled=ALWAYS_ON,
    ),
}
CALLERS = {
    "no caller": [],
    "sampled caller with state": [
        (b"traceparent", f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01".encode()),
        (b"tracestate", STATE.encode()),
    ],
    "unsampled caller": [
        (b"traceparent", f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-00".encode()),
    ],
}
OUTCOMES = {
    "201": (201, None),
    "503": (503, None),
    "raises before answering": (None, RuntimeError),
    "raises after its 200": (200, RuntimeError),
    "cancelled": (None, asyncio.CancelledError),
}


@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=list(SAMPLERS))
@pytest.mark.parametrize("caller", CALLERS.values(), ids=list(CALLERS))
@pytest.mark.parametrize("outcome", OUTCOMES.values(), ids=list(OUTCOMES))
def test_request_spans_equal_the_sdks_for_the_same_requests(
    sampler: Sampler,
    caller: list[tuple[bytes, bytes]],
    outcome: tuple[int | None, type[BaseException] | None],
) -> None:
    ours, seen_ours = run(sampler, caller, *outcome, sdk=False)
    theirs, seen_sdk = run(sampler, caller, *outcome, sdk=True)
    assert [comparable(s) for s in ours] == [comparable(s) for s in theirs]
    assert encode_readable(same_clock(ours)) == encode_readable(same_clock(theirs))
    for mine, sdks in zip(seen_ours, seen_sdk, strict=True):
        if not caller and not sdks[-1] & TraceFlags.SAMPLED:
            # An unsampled root: the SDK made a span no trace holds, with ids the log
            # line named; here nothing is current.
            assert mine == ([], {}, None, TraceFlags.DEFAULT)
        else:  # record headers, log ids, a run's traceparent, the context's flags
            assert mine == sdks
    if (caller and caller[0][1].endswith(b"-01")) or not caller:
        assert ours, "every sampler here keeps some of these requests"


def test_the_caller_decision_is_the_samplers_own() -> None:
    """`caller_decision` (which reads the SDK's private delegates of ParentBased) against
    the SDK's `should_sample` for a remote parent, sampled and not, on many trace ids."""
    samplers: list[Sampler] = [
        *SAMPLERS.values(),
        ParentBasedTraceIdRatio(0.1),
        ParentBased(ALWAYS_OFF, remote_parent_sampled=ALWAYS_OFF),
        ALWAYS_ON,
        ALWAYS_OFF,
    ]
    for sampler in samplers:
        follows = caller_decision(sampler)
        assert follows is not None, sampler.get_description()
        for n in range(600):
            trace_id = (n * 0x9E3779B97F4A7C15_F39CC0605CEDC834) % (1 << 128) or 1
            for flag in (True, False):
                parent = SpanContext(
                    trace_id,
                    CALLER_SPAN,
                    True,
                    TraceFlags(TraceFlags.SAMPLED if flag else 0),
                    TraceState(),
                )
                context: Context = trace.set_span_in_context(NonRecordingSpan(parent))
                decision = sampler.should_sample(context, trace_id, "r").decision
                expected = decision is not Decision.DROP
                assert follows(trace_id, flag) is expected, (sampler.get_description(), flag)


def normalized(records: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Kafka records of `ExportTraceServiceRequest`s with every clock reading and
    stack trace blanked, one span a request (the two runs batch alike only so)."""
    out = []
    for key, payload in records:
        request = ExportTraceServiceRequest.FromString(payload)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span.start_time_unix_nano = span.end_time_unix_nano = 0
                    for event in span.events:
                        event.time_unix_nano = 0
                        for attribute in event.attributes:
                            if attribute.key == "exception.stacktrace":
                                attribute.value.string_value = ""
        out.append((key, request.SerializeToString(deterministic=True)))
    return out


@pytest.mark.parametrize("caller", CALLERS.values(), ids=list(CALLERS))
@pytest.mark.parametrize("outcome", OUTCOMES.values(), ids=list(OUTCOMES))
def test_the_services_provider_puts_the_sdks_records_on_kafka(
    caller: list[tuple[bytes, bytes]], outcome: tuple[int | None, type[BaseException] | None]
) -> None:
    """Through the provider a service runs with (spans recorded here go to their own
    batch thread and are encoded from `OtlpSpan`s, not SDK spans), the Kafka records
    hold what the SDK's spans and the SDK's encoding path put there."""
    sampler = ParentBasedTraceIdRatio(0.5)
    one_a_batch = BatchSettings(max_export_batch_size=1, schedule_delay_ms=1)
    records = {}
    for sdk in (False, True):
        kafka = KafkaRecords()
        provider = SelfTraceProvider(RESOURCE, sampler, [kafka], one_a_batch)
        provider.id_generator = SeededIds()
        run(sampler, caller, *outcome, sdk=sdk, provider=provider)
        records[sdk] = sorted(normalized(kafka.records))
    assert records[False] == records[True]
    if not caller or caller[0][1].endswith(b"-01"):
        assert records[False], "some of the requests are sampled"
