"""One stage's spans and metrics, collected in memory and handed back as OTLP protobuf.

A stage is short-lived, so nothing is exported in the background: spans go to an
in-memory exporter and metrics to an in-memory reader, and at the end they are encoded
with the OTLP protobuf encoders into one `ExportTraceServiceRequest` and one
`ExportMetricsServiceRequest`, the values the `otel-spans` and `otel-metrics` topics
carry. The stage span is a child of the run's root span (W3C `TRACEPARENT`). With
`LINEAGEHUB_OTLP_DIRECT=1` and `OTEL_EXPORTER_OTLP_ENDPOINT` the same spans and
metrics also go straight to an OTLP collector, flushed before the stage exits.

Providers are created per stage and never installed globally, so the local CLI can run
three stages in one process. The metrics SDK (~40 ms to import) is loaded when the stage
records its metrics, after its work, not before the work starts.

No credentials leave in a span: `user:password@` is dropped from every URI in the
attributes the stage gives, in status descriptions and in recorded exceptions.
"""

from __future__ import annotations

import os
import resource
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from lineagehub.datasets import redact_text
from pipeline_runner.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter

SCOPE = "pipeline_runner"

ATTR_RUN_ID = "lineagehub.run_id"
ATTR_STAGE = "lineagehub.stage"
ATTR_PIPELINE = "lineagehub.pipeline"
ATTR_STAGE_RUN_ID = "lineagehub.stage_run_id"
ATTR_RECORDS_IN = "lineagehub.records_in"
ATTR_RECORDS_OUT = "lineagehub.records_out"
ATTR_ROWS = "lineagehub.rows"
ATTR_BYTES = "lineagehub.bytes"

Attributes = Mapping[str, AttributeValue]


def redacted(attributes: Attributes | None) -> dict[str, AttributeValue]:
    """`attributes` with the credentials of every URI in a text value dropped."""
    out: dict[str, AttributeValue] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str):
            out[key] = redact_text(value)
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out[key] = [redact_text(str(v)) for v in value]
        else:
            out[key] = value
    return out


def record_exception(span: Span, exc: BaseException) -> None:
    """Record `exc` on `span` with its message and stack trace redacted."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    span.record_exception(
        exc,
        attributes={
            "exception.message": redact_text(str(exc)),
            "exception.stacktrace": redact_text(text),
        },
    )


def peak_memory_bytes() -> int:
    """The process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def parent_context(traceparent: str | None) -> Context | None:
    """The context a W3C traceparent names (None when there is none, or it is invalid)."""
    if not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _grpc() -> bool:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc"


def _otlp_span_exporter() -> SpanExporter:
    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _otlp_metric_exporter() -> MetricExporter:
    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


class StageMetrics:
    """The stage's instruments, on a meter provider of their own with an in-memory
    reader (and a periodic OTLP one when exporting directly)."""

    def __init__(self, resource: Resource, *, otlp_direct: bool) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            InMemoryMetricReader,
            MetricReader,
            PeriodicExportingMetricReader,
        )

        self.reader: InMemoryMetricReader = InMemoryMetricReader()
        readers: list[MetricReader] = [self.reader]
        if otlp_direct:
            readers.append(PeriodicExportingMetricReader(_otlp_metric_exporter()))
        self.provider: MeterProvider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
        meter = self.provider.get_meter(SCOPE)
        self.rows_processed = meter.create_counter(
            "lineagehub.rows.processed", unit="{row}", description="Rows a stage wrote"
        )
        self.rows_rejected = meter.create_counter(
            "lineagehub.rows.rejected",
            unit="{row}",
            description="Rows the transform dropped (filter, dropNulls, deduplicate)",
        )
        self.quality_failed_rows = meter.create_counter(
            "lineagehub.quality.failed_rows",
            unit="{row}",
            description="Rows that failed a quality check",
        )
        self.duration = meter.create_histogram(
            "lineagehub.stage.duration", unit="s", description="Duration of a stage"
        )
        self.bytes_read = meter.create_counter(
            "lineagehub.bytes.read", unit="By", description="Bytes a stage read"
        )
        self.bytes_written = meter.create_counter(
            "lineagehub.bytes.written", unit="By", description="Bytes a stage wrote"
        )
        self.peak_memory = meter.create_gauge(
            "lineagehub.process.memory.peak",
            unit="By",
            description="Peak resident memory of the stage process",
        )


@dataclass(frozen=True)
class TelemetryBatch:
    """A stage's telemetry, ready to publish."""

    trace_id: str
    span_id: str
    spans: bytes
    span_count: int
    metrics: bytes | None


class StageTelemetry:
    def __init__(
        self,
        settings: Settings,
        *,
        traceparent: str | None,
        resource_attributes: Mapping[str, str] | None = None,
        metric_attributes: Attributes | None = None,
    ) -> None:
        self._resource = Resource.create(
            {"service.name": settings.service_name, **(resource_attributes or {})}
        )
        self.service_name = settings.service_name
        self._otlp_direct = settings.otlp_direct
        self._spans = InMemorySpanExporter()
        self._tracer_provider = TracerProvider(
            resource=self._resource, sampler=ALWAYS_ON, shutdown_on_exit=False
        )
        self._tracer_provider.add_span_processor(SimpleSpanProcessor(self._spans))
        if settings.otlp_direct:
            self._tracer_provider.add_span_processor(BatchSpanProcessor(_otlp_span_exporter()))
        self.tracer = self._tracer_provider.get_tracer(SCOPE)
        self.metric_attributes: Attributes = dict(metric_attributes or {})
        self._metrics: StageMetrics | None = None
        self._parent = parent_context(traceparent)
        self._root: Span | None = None

    @contextmanager
    def stage_span(self, name: str, attributes: Attributes) -> Iterator[Span]:
        """The stage's span, a child of the run's root span. Errors are recorded by the
        caller (`fail`), so the span's status says what the stage said."""
        with self.tracer.start_as_current_span(
            name,
            context=self._parent,
            kind=SpanKind.INTERNAL,
            attributes=redacted(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            self._root = span
            yield span

    @contextmanager
    def step(self, name: str, attributes: Attributes | None = None) -> Iterator[Span]:
        """A child span of the stage span (read / transform / validate / write)."""
        with self.tracer.start_as_current_span(
            name,
            attributes=redacted(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                record_exception(span, exc)
                description = f"{type(exc).__name__}: {redact_text(str(exc))}"
                span.set_status(Status(StatusCode.ERROR, description))
                raise

    def fail(self, span: Span, kind: str, reason: str) -> None:
        span.set_status(Status(StatusCode.ERROR, f"{kind}: {redact_text(reason)}"))
        span.set_attribute("error.type", kind)

    def record(
        self,
        *,
        rows_out: int | None,
        rejected: int | None,
        quality_failed: int,
        duration: float,
        bytes_read: int | None,
        bytes_written: int | None,
        ok: bool,
    ) -> None:
        if self._metrics is None:
            self._metrics = StageMetrics(self._resource, otlp_direct=self._otlp_direct)
        m = self._metrics
        attrs = {**self.metric_attributes, "lineagehub.outcome": "success" if ok else "failure"}
        if rows_out:
            m.rows_processed.add(rows_out, attrs)
        if rejected:
            m.rows_rejected.add(rejected, attrs)
        if quality_failed:
            m.quality_failed_rows.add(quality_failed, attrs)
        m.duration.record(duration, attrs)
        if bytes_read:
            m.bytes_read.add(bytes_read, attrs)
        if bytes_written:
            m.bytes_written.add(bytes_written, attrs)
        m.peak_memory.set(peak_memory_bytes(), attrs)

    def finish(self) -> TelemetryBatch:
        """Encode everything recorded, flush any direct exporters, and shut down. (The
        OTLP encoders are loaded here, after the stage's work.)"""
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        spans = self._spans.get_finished_spans()
        metrics_data = self._metrics.reader.get_metrics_data() if self._metrics else None
        trace_id = span_id = ""
        if self._root is not None:
            ctx = self._root.get_span_context()
            trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        batch = TelemetryBatch(
            trace_id=trace_id,
            span_id=span_id,
            spans=encode_spans(spans).SerializeToString(),
            span_count=len(spans),
            metrics=(
                encode_metrics(metrics_data).SerializeToString()
                if metrics_data is not None
                else None
            ),
        )
        self._tracer_provider.force_flush()
        self._tracer_provider.shutdown()
        if self._metrics is not None:
            self._metrics.provider.force_flush()
            self._metrics.provider.shutdown()
        return batch
