"""One stage's spans and metrics, collected in memory and handed back as OTLP protobuf.

A stage is short-lived, so nothing is exported in the background. Its spans and
metrics are recorded here without the OpenTelemetry SDK (whose tracing, metrics and
encoders cost a stage ~0.2 s of CPU for a few spans and seven numbers), and encoded at
the end into one `ExportTraceServiceRequest` (`lineagehub.otlp_spans`) and
one `ExportMetricsServiceRequest` (`pipeline_runner.stage_metrics`), the values the
`otel-spans` and `otel-metrics` topics carry. The stage span is a child of the run's root span (W3C
`TRACEPARENT`). With `LINEAGEHUB_OTLP_DIRECT=1` and `OTEL_EXPORTER_OTLP_ENDPOINT` the
same spans and metrics also go straight to an OTLP collector, before the stage exits.

Nothing is installed globally, so the local CLI can run three stages in one process.

No credentials leave in a span: `user:password@` is dropped from every URI in the
attributes the stage gives, in status descriptions and in recorded exceptions.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lineagehub.datasets import redact_text
from lineagehub.telemetry.spans import AttributeValue, FixedSpan, SpanEvent
from lineagehub.tracecontext import parse_traceparent
from pipeline_runner.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from pipeline_runner.stage_metrics import Measurements

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


def peak_memory_bytes() -> int:
    """The process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def parent_ids(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, span id) a W3C traceparent names; None when there is none or it is
    not valid (the stage then starts a trace of its own). The rules are the shared
    reader's, so a stage continues exactly the traces the gateway and operator do."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    return f"{parsed.trace_id:032x}", f"{parsed.span_id:016x}"


def resource_of(service_name: str, given: Mapping[str, str]) -> dict[str, str]:
    """The stage's resource, as the SDK's `Resource.create` makes it: the SDK's own
    `telemetry.sdk.*` (language, name, version: the stage's spans and metrics are
    encoded to the SDK's wire format, and that is what a reader groups them by), a
    `service.instance.id` of its own, `OTEL_RESOURCE_ATTRIBUTES` (key=value, comma
    separated, percent-encoded), then `given`, then `service.name` (`OTEL_SERVICE_NAME`).
    The SDK's version comes from its one-line version module, not the SDK itself."""
    from opentelemetry.sdk.version import __version__ as sdk_version

    out: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "service.instance.id": str(uuid.uuid4()),
    }
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
        self.span_id = os.urandom(8).hex()
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
        self.trace_id, self._parent_span_id = parent or (os.urandom(16).hex(), "")
        self._open: list[RecordedSpan] = []
        self._finished: list[FixedSpan] = []
        self.metric_attributes: Attributes = dict(metric_attributes or {})
        self._measurements: Measurements | None = None
        self._start_ns = time.time_ns()
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
        """The stage's metrics, once, after its work (their instruments and encoder are
        imported here: nothing before the work needs them)."""
        from pipeline_runner import stage_metrics as metrics
        from pipeline_runner.stage_metrics import Measurements

        outcome = "success" if ok else "failure"
        m = Measurements({**self.metric_attributes, "lineagehub.outcome": outcome}, self._start_ns)
        for instrument, value in (
            (metrics.ROWS_PROCESSED, rows_out),
            (metrics.ROWS_REJECTED, rejected),
            (metrics.QUALITY_FAILED_ROWS, quality_failed),
            (metrics.BYTES_READ, bytes_read),
            (metrics.BYTES_WRITTEN, bytes_written),
        ):
            if value:  # a counter that did not count has no data point
                m.put(instrument, value)
        m.put(metrics.DURATION, duration)
        m.put(metrics.PEAK_MEMORY, peak_memory_bytes())
        self._measurements = m

    @property
    def spans(self) -> list[FixedSpan]:
        """The spans finished so far, in the order they ended."""
        return list(self._finished)

    def finish(self) -> TelemetryBatch:
        """Encode everything recorded (straight in the protobuf wire format, as the SDK's
        encoders would: no protobuf module is loaded) and send it to a collector too
        when exporting directly."""
        from lineagehub.otlp_spans import encode_request, from_fixed
        from pipeline_runner import stage_metrics as metrics

        spans = self.spans
        m = self._measurements
        batch = TelemetryBatch(
            trace_id=self.trace_id,
            span_id=self._root.span_id if self._root is not None else "",
            spans=encode_request([from_fixed(s) for s in spans], self.resource, SCOPE),
            span_count=len(spans),
            metrics=metrics.encode(m, self.resource, SCOPE) if m is not None else None,
        )
        if self._otlp_direct:
            from lineagehub.otlp_spans import export_fixed_spans
            from pipeline_runner import otlp_direct

            export_fixed_spans(spans, self.resource, SCOPE, otlp_span_exporter())
            if m is not None:
                exporter = otlp_direct.otlp_metric_exporter(_grpc())
                otlp_direct.export_metrics(m, self.resource, SCOPE, exporter)
        return batch
