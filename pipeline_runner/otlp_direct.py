"""A stage's spans and metrics sent straight to an OTLP collector
(`LINEAGEHUB_OTLP_DIRECT=1`).

The stage records them without the OpenTelemetry SDK; only when they also go to a
collector are they handed to the SDK's OTLP exporters (HTTP or gRPC, with their
`OTEL_EXPORTER_OTLP_*` settings), once, before the stage exits: the finished spans as
they are, the metrics replayed into instruments of a meter provider of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from lineagehub.telemetry.spans import FixedSpan
from pipeline_runner.stage_metrics import Kind, Measurements


def _context(trace_id: str, span_id: str, *, remote: bool) -> SpanContext:
    return SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def readable(span: FixedSpan, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """`span` as the SDK's finished span."""
    parent = (
        _context(span.trace_id, span.parent_span_id, remote=True) if span.parent_span_id else None
    )
    if span.ok is None:
        status = Status(StatusCode.UNSET)
    elif span.ok:
        status = Status(StatusCode.OK)
    else:
        status = Status(StatusCode.ERROR, span.message)
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id, remote=False),
        parent=parent,
        resource=resource,
        attributes=dict(span.attributes),
        events=[Event(e.name, dict(e.attributes), e.time_unix_nano) for e in span.events],
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=span.start_unix_nano(),
        end_time=span.end_unix_nano(),
        instrumentation_scope=scope,
    )


def export_spans(
    spans: Sequence[FixedSpan],
    resource: Mapping[str, str],
    scope: str,
    exporter: SpanExporter,
) -> None:
    """Export `spans` with `exporter` and shut it down (its own retries and timeout
    apply; a failure is logged by the exporter, never raised into the stage)."""
    res = Resource.create(dict(resource))
    instrumentation = InstrumentationScope(scope)
    try:
        exporter.export([readable(s, res, instrumentation) for s in spans])
    finally:
        exporter.shutdown()


def otlp_metric_exporter(grpc: bool) -> MetricExporter:
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def export_metrics(
    m: Measurements, resource: Mapping[str, str], scope: str, exporter: MetricExporter
) -> None:
    """Replay `m` into SDK instruments and export them once with `exporter`."""
    reader = PeriodicExportingMetricReader(exporter)
    provider = MeterProvider(
        resource=Resource.create(dict(resource)), metric_readers=[reader], shutdown_on_exit=False
    )
    meter = provider.get_meter(scope)
    try:
        for instrument, value in m.recorded():
            name, unit, text = instrument.name, instrument.unit, instrument.description
            if instrument.kind is Kind.SUM:
                meter.create_counter(name, unit, text).add(value, m.attributes)
            elif instrument.kind is Kind.HISTOGRAM:
                meter.create_histogram(name, unit, text).record(value, m.attributes)
            else:
                meter.create_gauge(name, unit, text).set(value, m.attributes)
        provider.force_flush()
    finally:
        provider.shutdown()
