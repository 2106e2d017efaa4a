"""The gateway's own spans: FastAPI's OpenTelemetry instrumentation, and the request
span's context handed on to what a request creates (a PipelineRun, Kafka records)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: Scrapes, probes and the console's files: frequent, and no one's trace. Each is
#: searched in the full URL, so a path is anchored after the host (`/api/v1/metrics`
#: stays traced).
EXCLUDED_URLS = ",".join(
    (r"//[^/]+/metrics(\?.*)?$", r"//[^/]+/healthz(\?.*)?$", r"//[^/]+/console/(static|lib)/")
)
_W3C = TraceContextTextMapPropagator()


def instrument(app: FastAPI, provider: TracerProvider) -> None:
    """A server span per request (a child of the caller's `traceparent`), named by
    route template; no spans per ASGI receive/send message."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )


def current_context_carrier() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span; empty without one."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


def run_traceparent(headers: Mapping[str, str]) -> str | None:
    """The trace context a created PipelineRun continues: the gateway's request span
    when it is traced, else the caller's own `traceparent` when it is well formed."""
    if trace.get_current_span().is_recording():
        return current_context_carrier().get("traceparent")
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=_W3C.extract(headers))
    return carrier.get("traceparent")


def kafka_headers() -> list[tuple[str, bytes]]:
    """Record headers carrying the current span's context (empty without one), so a
    consumer's span for the record is a child of the span that produced it."""
    return [(name, value.encode()) for name, value in current_context_carrier().items()]
