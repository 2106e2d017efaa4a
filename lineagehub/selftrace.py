"""Our services' own spans (self-tracing), with the OpenTelemetry SDK.

Sampled as OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG say (the SDK's names, read from
the environment the provider is given); without them,
a caller's decision is followed and one in ten of the rest is sampled (DEFAULT_ROOT_RATIO:
every span costs the service tens of microseconds, and a console's polling or a busy
ingest must not write a trace per request). Batched by the SDK's BatchSpanProcessor (OTEL_BSP_*),
and exported as OTLP protobuf onto the `otel-spans` Kafka topic, the path the runs'
spans take to ClickHouse and Jaeger, and, as for the runs' spans, also straight to
OTEL_EXPORTER_OTLP_ENDPOINT with LINEAGEHUB_OTLP_DIRECT=1. The exporter's own producer
is not instrumented, so exporting spans makes no spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, SpanKind, Tracer

from lineagehub.telemetry.publisher import KafkaPublisher
from lineagehub.topics import SPANS_TOPIC
from lineagehub.tracecontext import TRACEPARENT, TRACESTATE, headers_context

log = logging.getLogger(__name__)

"""On a PipelineRun created over HTTP: the W3C traceparent of the gateway's request span
(a child of the caller's span when the request carried one), for the run's root span
to be its child."""

DIRECT_ENV = "LINEAGEHUB_OTLP_DIRECT"
#: The topic our spans go to instead of `otel-spans` (a benchmark keeps its spans out of
#: the stores this way).
TOPIC_ENV = "LINEAGEHUB_SELFTRACE_TOPIC"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
PROTOCOL_ENV = "OTEL_EXPORTER_OTLP_PROTOCOL"
EXPORT_TIMEOUT_S = 15.0
SAMPLER_ENV = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG_ENV = "OTEL_TRACES_SAMPLER_ARG"
#: Of the requests (or records) that arrive without a sampled trace, the share traced.
DEFAULT_ROOT_RATIO = 0.1
CONTEXT_HEADERS = frozenset({TRACEPARENT, TRACESTATE})


class KafkaSpanExporter(SpanExporter):
    """Each batch as one `ExportTraceServiceRequest` record on `otel-spans`, keyed by the
    trace id of its first span. The SDK calls `export` from its batch thread; the
    aiokafka producer lives on an event loop of its own in a second thread."""

    def __init__(
        self, bootstrap: str, topic: str = SPANS_TOPIC, client_id: str = "lineage-hub-selftrace"
    ) -> None:
        self.topic = topic
        self._publisher = KafkaPublisher(bootstrap, client_id)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="selftrace-kafka", daemon=True
        )
        self._thread.start()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        payload = encode_spans(spans).SerializeToString()
        context = spans[0].context
        key = format(context.trace_id, "032x") if context is not None else ""
        sent = asyncio.run_coroutine_threadsafe(
            self._publisher.send(self.topic, key, payload), self._loop
        )
        try:
            sent.result(EXPORT_TIMEOUT_S)
        except Exception as exc:  # a lost batch of our own spans must not hurt the service
            sent.cancel()
            log.warning("self-trace spans not exported to Kafka: %s", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._thread.is_alive():
            return
        stopped = asyncio.run_coroutine_threadsafe(self._publisher.stop(), self._loop)
        try:
            stopped.result(EXPORT_TIMEOUT_S)
        except Exception as exc:
            log.warning("self-trace Kafka producer did not stop cleanly: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(EXPORT_TIMEOUT_S)
        self._loop.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # `export` returns once Kafka acknowledged the batch


def direct_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """OTLP straight to a collector, as for the runner's spans: only with
    LINEAGEHUB_OTLP_DIRECT=1 and OTEL_EXPORTER_OTLP_ENDPOINT set (the local stack sets
    the endpoint for its tools; the default path stays Kafka). OTEL_EXPORTER_OTLP_PROTOCOL
    `http/protobuf` (default) or `grpc`."""
    if environ.get(DIRECT_ENV) != "1" or not environ.get(ENDPOINT_ENV):
        return None
    if otlp_protocol(environ) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()  # endpoint, headers, timeout from the environment
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def otlp_protocol(environ: Mapping[str, str]) -> str:
    """OTEL_EXPORTER_OTLP_PROTOCOL, checked: `http/protobuf` (default) or `grpc`."""
    protocol = environ.get(PROTOCOL_ENV) or "http/protobuf"
    if protocol not in {"http/protobuf", "grpc"}:
        raise ValueError(
            f"{PROTOCOL_ENV}={protocol!r} is not supported for self-tracing: "
            "use http/protobuf or grpc"
        )
    return protocol


#: OTEL_TRACES_SAMPLER's values, as the SDK names them: a sampler, or (the ratio ones)
#: a sampler class taking OTEL_TRACES_SAMPLER_ARG.
FIXED_SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
}
RATIO_SAMPLERS: dict[str, type[TraceIdRatioBased] | type[ParentBasedTraceIdRatio]] = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}


def configured_sampler(environ: Mapping[str, str]) -> Sampler:
    """The sampler `environ` asks for with OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    (the SDK's names and meaning, read from `environ`, not only from the process's
    environment as the SDK does); without them, follow the caller and sample
    DEFAULT_ROOT_RATIO of the rest. A name or ratio the SDK would only warn about and
    replace is refused here, naming the variable and what it takes."""
    name = environ.get(SAMPLER_ENV, "").strip().lower()
    if not name:
        return ParentBasedTraceIdRatio(DEFAULT_ROOT_RATIO)
    if name in FIXED_SAMPLERS:
        return FIXED_SAMPLERS[name]
    if name not in RATIO_SAMPLERS:
        known = ", ".join([*FIXED_SAMPLERS, *RATIO_SAMPLERS])
        raise ValueError(f"{SAMPLER_ENV}={name!r} is not supported for self-tracing: use {known}")
    text = environ.get(SAMPLER_ARG_ENV, "").strip()
    try:
        ratio = float(text) if text else 1.0  # the SDK's default for a ratio sampler
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(
            f"{SAMPLER_ARG_ENV}={text!r} is not a ratio: use a number from 0 to 1 "
            f"(the share of traces {name} samples)"
        )
    return RATIO_SAMPLERS[name](ratio)


def tracer_provider(
    service: str, kafka_bootstrap: str, environ: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """The service's provider: spans onto `otel-spans` when Kafka is configured, and to
    a collector when asked (`direct_exporter`); None when self-tracing is off
    (OTEL_SDK_DISABLED=true) or has nowhere to go. Each exporter behind its own
    BatchSpanProcessor."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    sampler = configured_sampler(env)  # refused before any exporter starts a thread
    exporters: list[SpanExporter] = []
    if kafka_bootstrap:
        exporters.append(KafkaSpanExporter(kafka_bootstrap, env.get(TOPIC_ENV) or SPANS_TOPIC))
    direct = direct_exporter(env)
    if direct is not None:
        exporters.append(direct)
    if not exporters:
        return None
    service_name = env.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), sampler=sampler
    )
    for target in exporters:
        provider.add_span_processor(BatchSpanProcessor(target))
    return provider


def record_context(headers: Sequence[tuple[str, bytes]] | None) -> Context | None:
    """The trace context a Kafka record's producer put in its headers (the gateway's
    request span, for a lineage event POSTed to it); None when it carries no valid one."""
    return headers_context(headers)


@contextlib.contextmanager
def record_span(
    tracer: Tracer | None,
    name: str,
    topic: str,
    headers: Sequence[tuple[str, bytes]] | None,
    attributes: Mapping[str, str | int],
) -> Iterator[Span | None]:
    """A CONSUMER span, current while a consumer stores one Kafka record, a child of
    the context the record's headers carry. None (no span work at all) without a
    tracer, for a record that carries no trace context, and for a record of the spans
    topic: a consumer never traces its own writing of spans, which would put a span
    onto `otel-spans` for every span stored, in a loop. Sampling follows the producer's
    decision (the default sampler is parent-based)."""
    parent = None if tracer is None or topic == SPANS_TOPIC else record_context(headers)
    if tracer is None or parent is None:
        yield None
        return
    span_attributes = {"messaging.system": "kafka", "messaging.destination.name": topic}
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes={**span_attributes, **attributes}
    ) as span:
        yield span


class KafkaRecord(Protocol):
    """The parts of a consumed Kafka record a store span names."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def batch_store_spans(
    tracer: Tracer,
    name: str,
    records: Sequence[KafkaRecord],
    started_ns: int,
    attributes: Mapping[str, str | int],
) -> int:
    """After a batch was stored: for each trace context its records carry, a CONSUMER
    span from `started_ns` to now, a child of that context. A batch serves many traces,
    so each gets its own span rather than one batch span with many parents; and the
    records of one context (the events of one batch POST, all under its request span)
    share one span, `messaging.batch.message_count` of them from `messaging.kafka.offset`
    on, rather than fifty alike. Records without a context, and every record of the
    spans topic, make no span. Returns the spans started."""
    groups: dict[tuple[tuple[str, bytes], ...], list[KafkaRecord]] = {}
    for record in records:
        if record.topic == SPANS_TOPIC:
            continue
        headers: Sequence[tuple[str, bytes]] = getattr(record, "headers", None) or ()
        key = tuple(h for h in headers if h[0] in CONTEXT_HEADERS)
        if key:
            groups.setdefault(key, []).append(record)
    made = 0
    for key, group in groups.items():
        parent = record_context(key)
        if parent is None:
            continue
        first = group[0]
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": first.topic,
                "messaging.destination.partition.id": str(first.partition),
                "messaging.kafka.offset": str(first.offset),
                "messaging.batch.message_count": len(group),
                **attributes,
            },
            start_time=started_ns,
        )
        span.end()
        made += 1
    return made
