"""The gateway's request middleware as a test wraps an ASGI app in it, with tracing."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp

from gateway.observed import ObservedRequests
from gateway.promtext import GatewayMetrics
from gateway.tracing import RequestSpans


def traced(app: ASGIApp, provider: TracerProvider) -> ObservedRequests:
    """`app` behind the one request middleware the gateway serves with, tracing through
    `provider` (its own fresh metrics)."""
    return ObservedRequests(app, GatewayMetrics(), spans=RequestSpans(provider))


def spans_of(app: ObservedRequests) -> RequestSpans:
    assert app.spans is not None
    return app.spans
