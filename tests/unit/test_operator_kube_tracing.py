"""The operator's call spans: children of the run's root span, only inside a run, and a
refused call marked with its status."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException
from lineagehub_operator.kube_tracing import call_span, under_run
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from lineagehub.selftrace import configured_sampler

TRACE, ROOT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
RUN = f"00-{TRACE}-{ROOT}-01"
WHERE = {"k8s.namespace.name": "ns", "k8s.object.name": "orders-extract"}


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=configured_sampler({}))  # the services' default
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider, spans


def test_a_call_in_a_run_is_a_client_span_under_its_root(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = traced
    with under_run(RUN), call_span(provider.get_tracer("t"), "create Job", WHERE):
        pass
    (span,) = spans.get_finished_spans()
    assert span.name == "create Job" and span.kind is SpanKind.CLIENT
    assert span.context is not None and format(span.context.trace_id, "032x") == TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == ROOT
    assert dict(span.attributes or {}) == WHERE
    assert span.status.status_code is StatusCode.UNSET


def test_a_refused_call_is_an_error_with_its_status(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = traced
    with (
        pytest.raises(ApiException),
        under_run(RUN),
        call_span(provider.get_tracer("t"), "create Job", WHERE),
    ):
        raise ApiException(status=409, reason="Conflict")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["http.response.status_code"] == 409


@pytest.mark.parametrize(
    "traceparent",
    [None, "", f"00-{'0' * 32}-{ROOT}-01", "garbage"],
)
def test_outside_a_run_no_span(
    traced: tuple[TracerProvider, InMemorySpanExporter], traceparent: str | None
) -> None:
    provider, spans = traced
    with under_run(traceparent), call_span(provider.get_tracer("t"), "list Pods", WHERE):
        pass
    with call_span(provider.get_tracer("t"), "list Pods", WHERE):  # no run at all
        pass
    assert spans.get_finished_spans() == ()


def test_an_unsampled_run_records_nothing(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = traced
    with under_run(f"00-{TRACE}-{ROOT}-00"), call_span(provider.get_tracer("t"), "x", WHERE):
        pass
    assert spans.get_finished_spans() == ()


def test_the_run_context_ends_with_the_block(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = traced
    with under_run(RUN):
        pass
    with call_span(provider.get_tracer("t"), "patch PipelineRun status", WHERE):
        pass
    assert spans.get_finished_spans() == ()
