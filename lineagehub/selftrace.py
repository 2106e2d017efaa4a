"""Our services' own spans (self-tracing), with the OpenTelemetry SDK.

Sampled as the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: follow
the caller's decision, else sample), batched by the SDK's BatchSpanProcessor (OTEL_BSP_*),
and exported as OTLP to OTEL_EXPORTER_OTLP_ENDPOINT when one is set, else as OTLP
protobuf onto the `otel-spans` Kafka topic, the path the runs' spans take to ClickHouse
and Jaeger. The exporter's own producer is not instrumented, so exporting spans makes
no spans.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from lineagehub.telemetry.publisher import KafkaPublisher
from lineagehub.topics import SPANS_TOPIC

log = logging.getLogger(__name__)

RUN_TRACEPARENT_ANNOTATION = "lineagehub.io/traceparent"
"""On a PipelineRun created over HTTP: the W3C traceparent of the gateway's request span
(a child of the caller's span when the request carried one), for the run's root span
to be its child."""

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXPORT_TIMEOUT_S = 15.0


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


def exporter(kafka_bootstrap: str) -> SpanExporter | None:
    """OTLP to the configured endpoint, else Kafka when there is one, else None."""
    if any(os.environ.get(name) for name in ENDPOINT_ENVS):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout from the environment
    if kafka_bootstrap:
        return KafkaSpanExporter(kafka_bootstrap)
    return None


def tracer_provider(service: str, kafka_bootstrap: str) -> TracerProvider | None:
    """The service's provider, or None when self-tracing is off (OTEL_SDK_DISABLED=true)
    or has nowhere to go."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    target = exporter(kafka_bootstrap)
    if target is None:
        return None
    service_name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(target))
    return provider
