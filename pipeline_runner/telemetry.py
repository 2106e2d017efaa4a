"""One stage's spans and metrics, collected in memory and handed back as OTLP protobuf.

A stage is short-lived, so nothing is exported in the background. Its spans are
recorded here, without the OpenTelemetry SDK (whose tracing alone costs a stage ~0.1 s
of CPU to import), and encoded at the end into one `ExportTraceServiceRequest`
(`lineagehub.telemetry.spans.encode`); its metrics go to the SDK's in-memory reader,
loaded when the stage records them, after its work, and are encoded into one
`ExportMetricsServiceRequest`. Those are the values the `otel-spans` and
`otel-metrics` topics carry. The stage span is a child of the run's root span (W3C
`TRACEPARENT`). With `LINEAGEHUB_OTLP_DIRECT=1` and `OTEL_EXPORTER_OTLP_ENDPOINT` the
same spans and metrics also go straight to an OTLP collector, before the stage exits.

Nothing is installed globally, so the local CLI can run three stages in one process.

No credentials leave in a span: `user:password@` is dropped from every URI in the
attributes the stage gives, in status descriptions and in recorded exceptions.
"""

from __future__ import annotations

import os
import re
import resource
import secrets
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lineagehub.datasets import redact_text
from lineagehub.telemetry.spans import AttributeValue, FixedSpan, SpanEvent
from pipeline_runner.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

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

#: A W3C traceparent this runner continues (any version but ff; ids not all zeros).
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}"
    r"(?P<rest>-.*)?"
)


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


def peak_memory_bytes() -> int:
    """The process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def parent_ids(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, span id) a W3C traceparent names; None when there is none or it is
    not valid (the stage then starts a trace of its own)."""
    match = _TRACEPARENT.fullmatch((traceparent or "").strip())
    if match is None or match["version"] == "ff" or (match["version"] == "00" and match["rest"]):
        return None
    if set(match["trace"]) == {"0"} or set(match["span"]) == {"0"}:
        return None
    return match["trace"], match["span"]


def resource_of(service_name: str, given: Mapping[str, str]) -> dict[str, str]:
    """The stage's resource: `OTEL_RESOURCE_ATTRIBUTES` (key=value, comma separated,
    percent-encoded), then `given`, then `service.name` (`OTEL_SERVICE_NAME`)."""
    out: dict[str, str] = {}
    for item in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    return {**out, **given, "service.name": service_name}


class RecordedSpan:
    """A span of the stage while it is open: what `stage_span` and `step` yield."""

    def __init__(
        self, name: str, trace_id: str, parent_span_id: str, attributes: Attributes
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = secrets.token_hex(8)
        self.parent_span_id = parent_span_id
        self.attributes: dict[str, AttributeValue] = redacted(attributes)
        self.events: list[SpanEvent] = []
        self.error: str | None = None
        self.start_ns = time.time_ns()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_error(self, description: str) -> None:
        self.error = redact_text(description)

    def record_exception(self, exc: BaseException) -> None:
        """An `exception` event, its message and stack trace redacted."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.events.append(
            SpanEvent(
                name="exception",
                time_unix_nano=time.time_ns(),
                attributes={
                    "exception.type": type(exc).__qualname__,
                    "exception.message": redact_text(str(exc)),
                    "exception.stacktrace": redact_text(text),
                    "exception.escaped": "False",
                },
            )
        )

    def finished(self) -> FixedSpan:
        return FixedSpan(
            name=self.name,
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            start=None,
            end=None,
            start_ns=self.start_ns,
            end_ns=time.time_ns(),
            ok=None if self.error is None else False,
            message=self.error or "",
            attributes=self.attributes,
            events=self.events,
        )


def _grpc() -> bool:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc"


def otlp_span_exporter() -> SpanExporter:
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

    def __init__(self, attributes: Mapping[str, str], *, otlp_direct: bool) -> None:
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
        from opentelemetry.sdk.resources import Resource

        self.provider: MeterProvider = MeterProvider(
            resource=Resource.create(dict(attributes)),
            metric_readers=readers,
            shutdown_on_exit=False,
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
        self.service_name = settings.service_name
        self.resource = resource_of(settings.service_name, resource_attributes or {})
        self._otlp_direct = settings.otlp_direct
        parent = parent_ids(traceparent)
        self.trace_id, self._parent_span_id = parent or (secrets.token_hex(16), "")
        self._open: list[RecordedSpan] = []
        self._finished: list[FixedSpan] = []
        self.metric_attributes: Attributes = dict(metric_attributes or {})
        self._metrics: StageMetrics | None = None
        self._root: RecordedSpan | None = None

    @contextmanager
    def _span(self, name: str, attributes: Attributes | None) -> Iterator[RecordedSpan]:
        parent = self._open[-1].span_id if self._open else self._parent_span_id
        span = RecordedSpan(name, self.trace_id, parent, attributes or {})
        self._open.append(span)
        try:
            yield span
        finally:
            self._open.pop()
            self._finished.append(span.finished())

    @contextmanager
    def stage_span(self, name: str, attributes: Attributes) -> Iterator[RecordedSpan]:
        """The stage's span, a child of the run's root span. Errors are recorded by the
        caller (`fail`), so the span's status says what the stage said."""
        with self._span(name, attributes) as span:
            self._root = span
            yield span

    @contextmanager
    def step(self, name: str, attributes: Attributes | None = None) -> Iterator[RecordedSpan]:
        """A child span of the open span (read / transform / validate / write); an
        exception that leaves it is recorded on it, redacted, and goes on."""
        with self._span(name, attributes) as span:
            try:
                yield span
            except BaseException as exc:
                span.record_exception(exc)
                span.set_error(f"{type(exc).__name__}: {exc}")
                raise

    def fail(self, span: RecordedSpan, kind: str, reason: str) -> None:
        span.set_error(f"{kind}: {reason}")
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
            self._metrics = StageMetrics(self.resource, otlp_direct=self._otlp_direct)
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

    @property
    def spans(self) -> list[FixedSpan]:
        """The spans finished so far, in the order they ended."""
        return list(self._finished)

    def finish(self) -> TelemetryBatch:
        """Encode everything recorded and flush any direct exporters. (The protobuf
        modules and the metrics encoder are loaded here, after the stage's work.)"""
        from lineagehub.telemetry.spans import encode

        spans = self.spans
        metrics = None
        if self._metrics is not None:
            from opentelemetry.exporter.otlp.proto.common.metrics_encoder import (
                encode_metrics,
            )

            data = self._metrics.reader.get_metrics_data()
            if data is not None:
                metrics = encode_metrics(data).SerializeToString()
        batch = TelemetryBatch(
            trace_id=self.trace_id,
            span_id=self._root.span_id if self._root is not None else "",
            spans=encode(spans, self.service_name, self.resource, scope=SCOPE),
            span_count=len(spans),
            metrics=metrics,
        )
        if self._otlp_direct:
            from pipeline_runner.otlp_direct import export_spans

            export_spans(spans, self.resource, SCOPE, otlp_span_exporter())
        if self._metrics is not None:
            self._metrics.provider.force_flush()
            self._metrics.provider.shutdown()
        return batch
