"""A stage's metrics sent straight to an OTLP collector (`LINEAGEHUB_OTLP_DIRECT=1`).

The stage records them without the OpenTelemetry SDK; only when they also go to a
collector are they handed to the SDK's OTLP exporters (HTTP or gRPC, with their
`OTEL_EXPORTER_OTLP_*` settings), once, before the stage exits, replayed into
instruments of a meter provider of their own. Its spans take the path every span
recorded without the SDK takes (`lineagehub.otlp_spans.export_fixed_spans`).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from pipeline_runner.stage_metrics import Kind, Measurements


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
