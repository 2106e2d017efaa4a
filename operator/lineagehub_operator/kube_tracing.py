"""The operator's Kubernetes calls that matter to a run (create its Jobs and their
ConfigMap/claim, write its status, read its pods) as CLIENT spans in the run's own
trace, children of its root span (`status.traceparent`).

Through our path like every self-tracing span (`lineagehub.selftrace`: batched, onto
`otel-spans`), sampled by the run's decision: the sampler follows the parent, and a
run's traceparent is sampled. A call made outside a run's pass (no run context
attached) makes no span, so the operator's own housekeeping starts no traces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from kubernetes.client.exceptions import ApiException
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from lineagehub.tracecontext import parent_context, parse_traceparent

TRACER_NAME = "lineagehub.operator"


@contextlib.contextmanager
def under_run(traceparent: str | None) -> Iterator[None]:
    """The calls made inside are spans of the run whose root span `traceparent`
    names; without a valid one (a run's first pass, before its ids exist), untraced."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        yield
        return
    token = otel_context.attach(parent_context(parsed))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def call_span(
    tracer: Tracer | None, name: str, attributes: Mapping[str, str | int]
) -> Iterator[None]:
    """A CLIENT span around one API call, a child of the run's context; nothing without
    a tracer or outside a run. A refused call (ApiException) marks the span with its
    HTTP status and an error, whether or not the caller then accepts it (a 409 on a
    create the operator finds to be its own is still a refused request)."""
    if tracer is None or not trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with tracer.start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except ApiException as err:
            span.set_attributes(
                {"http.response.status_code": int(err.status or 0), "error.type": str(err.status)}
            )
            span.set_status(Status(StatusCode.ERROR, str(err.reason or "")))
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
            raise
