"""A consumer's span for a Kafka record continues the trace in the record's headers, and
never exists for the spans topic (no span about storing spans, in a loop)."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from lineagehub.selftrace import (
    batch_store_spans,
    configured_sampler,
    record_context,
    record_span,
)
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
SAMPLED = [("traceparent", f"00-{TRACE}-{PRODUCER_SPAN}-01".encode()), ("other", b"x")]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(spans: InMemorySpanExporter) -> trace.Tracer:
    provider = TracerProvider(sampler=configured_sampler({}))  # the services' default
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider.get_tracer("test")


def test_the_store_span_is_a_child_of_the_producers_span(
    tracer: trace.Tracer, spans: InMemorySpanExporter
) -> None:
    with record_span(tracer, "store", LINEAGE_TOPIC, SAMPLED, {"messaging.kafka.offset": "7"}) as s:
        assert s is not None and trace.get_current_span() is s
    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER and span.name == "store"
    assert span.context is not None and f"{span.context.trace_id:032x}" == TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PRODUCER_SPAN
    assert span.attributes is not None
    assert span.attributes["messaging.destination.name"] == LINEAGE_TOPIC
    assert span.attributes["messaging.kafka.offset"] == "7"


def test_an_exception_while_storing_marks_the_span(
    tracer: trace.Tracer, spans: InMemorySpanExporter
) -> None:
    with (
        pytest.raises(RuntimeError),
        record_span(tracer, "store", LINEAGE_TOPIC, SAMPLED, {}),
    ):
        raise RuntimeError("marquez exploded")
    (span,) = spans.get_finished_spans()
    assert not span.status.is_ok and [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize(
    ("topic", "headers"),
    [
        (SPANS_TOPIC, SAMPLED),  # storing spans is never traced
        (LINEAGE_TOPIC, None),  # a record without a trace context starts none
        (LINEAGE_TOPIC, [("traceparent", b"garbage")]),
    ],
)
def test_no_span_for_the_spans_topic_or_without_a_context(
    tracer: trace.Tracer,
    spans: InMemorySpanExporter,
    topic: str,
    headers: list[tuple[str, bytes]] | None,
) -> None:
    with record_span(tracer, "store", topic, headers, {}) as span:
        assert span is None or not span.is_recording()
    assert spans.get_finished_spans() == ()


def test_the_producers_decision_not_to_sample_is_followed(
    tracer: trace.Tracer, spans: InMemorySpanExporter
) -> None:
    unsampled = [("traceparent", f"00-{TRACE}-{PRODUCER_SPAN}-00".encode())]
    with record_span(tracer, "store", LINEAGE_TOPIC, unsampled, {}) as span:
        assert span is not None and not span.is_recording()
    assert spans.get_finished_spans() == ()


def test_no_tracer_no_span_work() -> None:
    with record_span(None, "store", LINEAGE_TOPIC, SAMPLED, {}) as span:
        assert span is None
    assert record_context(None) is None
    context = record_context([("tracestate", b"a=b"), *SAMPLED])
    assert context is not None
    assert f"{trace.get_current_span(context).get_span_context().trace_id:032x}" == TRACE


class _Record:
    def __init__(self, offset: int, headers: list[tuple[str, bytes]], topic: str) -> None:
        self.topic, self.partition, self.offset, self.headers = topic, 2, offset, headers


def test_a_batch_makes_one_span_per_context_its_records_carry(
    tracer: trace.Tracer, spans: InMemorySpanExporter
) -> None:
    """A batch POST's fifty records share their request's context: one store span for
    them, not fifty; each other context its own; no context, or the spans topic, none."""
    other_span = "1111111111111111"
    other = [("traceparent", f"00-{TRACE}-{other_span}-01".encode())]
    records = [
        _Record(10, SAMPLED, LINEAGE_TOPIC),
        _Record(11, other, LINEAGE_TOPIC),
        _Record(12, SAMPLED, LINEAGE_TOPIC),
        _Record(13, [], LINEAGE_TOPIC),
        _Record(14, SAMPLED, LINEAGE_TOPIC),
        _Record(15, SAMPLED, SPANS_TOPIC),
    ]
    made = batch_store_spans(tracer, "store", records, 1, {"lineagehub.store": "clickhouse"})
    finished = {
        f"{s.parent.span_id:016x}": s for s in spans.get_finished_spans() if s.parent is not None
    }
    assert made == 2 and set(finished) == {PRODUCER_SPAN, other_span}
    shared, alone = finished[PRODUCER_SPAN], finished[other_span]
    assert shared.attributes is not None and alone.attributes is not None
    assert shared.attributes["messaging.batch.message_count"] == 3
    assert shared.attributes["messaging.kafka.offset"] == "10"
    assert alone.attributes["messaging.batch.message_count"] == 1
    assert alone.attributes["messaging.kafka.offset"] == "11"
    assert shared.attributes["lineagehub.store"] == "clickhouse"
    assert shared.kind is SpanKind.CONSUMER and shared.start_time == 1
