"""A consumer's store span (recorded without the SDK) continues the trace in the record's
headers, follows the sampler's decision, is current while the record is stored, and
never exists for the spans topic (no span about storing spans, in a loop)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from lineagehub.otlp_spans import KIND_CONSUMER, STATUS_ERROR, STATUS_UNSET, OtlpSpan
from lineagehub.selftrace import record_context, remote_parent_sampling
from lineagehub.span_batches import BatchSettings, SpanBatcher
from lineagehub.store_spans import SpanRecorder, batch_store_spans, record_span
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from lineagehub.tracelog import current_span_ids

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
SAMPLED = [("traceparent", f"00-{TRACE}-{PRODUCER_SPAN}-01".encode()), ("other", b"x")]


class Recorded:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.spans: list[OtlpSpan] = []
        batcher = SpanBatcher(self._export, BatchSettings(), name="test-spans")
        self.recorder = SpanRecorder("test", remote_parent_sampling(environ or {}), batcher)

    def _export(self, spans: Sequence[OtlpSpan]) -> None:
        self.spans.extend(spans)

    def finished(self) -> list[OtlpSpan]:
        self.recorder.force_flush()
        return self.spans


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()  # the services' default sampler


def test_the_store_span_is_a_child_of_the_producers_span_and_current(recorded: Recorded) -> None:
    with record_span(
        recorded.recorder, "store", LINEAGE_TOPIC, SAMPLED, {"messaging.kafka.offset": "7"}
    ) as s:
        assert s is not None and trace.get_current_span() is s
        ids = current_span_ids()  # what a log line written while storing carries
    assert trace.get_current_span() is not s
    (span,) = recorded.finished()
    assert span.kind == KIND_CONSUMER and span.name == "store"
    assert f"{span.trace_id:032x}" == TRACE and f"{span.parent_span_id:016x}" == PRODUCER_SPAN
    assert span.parent_is_remote and span.span_id not in (0, span.parent_span_id)
    assert ids == {"trace_id": TRACE, "span_id": f"{span.span_id:016x}"}
    assert span.attributes == {
        "messaging.system": "kafka",
        "messaging.destination.name": LINEAGE_TOPIC,
        "messaging.kafka.offset": "7",
    }
    assert span.status_code == STATUS_UNSET and span.start_unix_nano <= span.end_unix_nano


def test_an_exception_while_storing_marks_the_span(recorded: Recorded) -> None:
    with (
        pytest.raises(RuntimeError),
        record_span(recorded.recorder, "store", LINEAGE_TOPIC, SAMPLED, {}),
    ):
        raise RuntimeError("marquez exploded")
    (span,) = recorded.finished()
    assert span.status_code == STATUS_ERROR
    assert span.status_message == "RuntimeError: marquez exploded"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    assert "marquez exploded" in str(event.attributes["exception.stacktrace"])


def test_a_status_set_by_the_storing_code_is_exported(recorded: Recorded) -> None:
    """The lineage consumer marks a dead-lettered record on the current span."""
    with record_span(recorded.recorder, "store", LINEAGE_TOPIC, SAMPLED, {}):
        trace.get_current_span().set_status(StatusCode.ERROR, "dead-lettered: bad")
        trace.get_current_span().set_attribute("extra", 3)
    (span,) = recorded.finished()
    assert (span.status_code, span.status_message) == (STATUS_ERROR, "dead-lettered: bad")
    assert span.attributes["extra"] == 3


@pytest.mark.parametrize(
    ("topic", "headers"),
    [
        (SPANS_TOPIC, SAMPLED),  # storing spans is never traced
        (LINEAGE_TOPIC, None),  # a record without a trace context starts none
        (LINEAGE_TOPIC, [("traceparent", b"garbage")]),
        (LINEAGE_TOPIC, [("traceparent", f"00-{TRACE}-{PRODUCER_SPAN}-00".encode())]),
    ],
)
def test_no_span_for_the_spans_topic_without_a_context_or_unsampled(
    recorded: Recorded, topic: str, headers: list[tuple[str, bytes]] | None
) -> None:
    with record_span(recorded.recorder, "store", topic, headers, {}) as span:
        assert span is None
    assert recorded.finished() == []


def test_the_configured_sampler_decides_for_the_store_span() -> None:
    """always_on keeps a span under an unsampled producer; always_off drops a sampled one."""
    unsampled = [("traceparent", f"00-{TRACE}-{PRODUCER_SPAN}-00".encode())]
    on = Recorded({"OTEL_TRACES_SAMPLER": "always_on"})
    with record_span(on.recorder, "store", LINEAGE_TOPIC, unsampled, {}) as span:
        assert span is not None
    assert len(on.finished()) == 1
    off = Recorded({"OTEL_TRACES_SAMPLER": "always_off"})
    with record_span(off.recorder, "store", LINEAGE_TOPIC, SAMPLED, {}) as span:
        assert span is None
    assert off.finished() == []


def test_no_recorder_no_span_work() -> None:
    with record_span(None, "store", LINEAGE_TOPIC, SAMPLED, {}) as s:
        assert s is None
    assert record_context(None) is None
    context = record_context([("tracestate", b"a=b"), *SAMPLED])
    assert context is not None
    assert f"{trace.get_current_span(context).get_span_context().trace_id:032x}" == TRACE


def test_the_producers_tracestate_is_carried_onto_the_span(recorded: Recorded) -> None:
    headers = [*SAMPLED, ("tracestate", b"vendor=x,other=y")]
    with record_span(recorded.recorder, "store", LINEAGE_TOPIC, headers, {}):
        pass
    (span,) = recorded.finished()
    assert span.trace_state == "vendor=x,other=y"


class _Record:
    def __init__(self, offset: int, headers: list[tuple[str, bytes]], topic: str) -> None:
        self.topic, self.partition, self.offset, self.headers = topic, 2, offset, headers


def test_a_batch_makes_one_span_per_context_its_records_carry(recorded: Recorded) -> None:
    """A batch POST's fifty records share their request's context: one store span for
    them, not fifty; each other context its own; no context, or the spans topic, none."""
    other_span = "1111111111111111"
    other = [("traceparent", f"00-{TRACE}-{other_span}-01".encode()), ("tracestate", b"v=1")]
    unsampled = [("traceparent", f"00-{TRACE}-2222222222222222-00".encode())]
    records = [
        _Record(10, SAMPLED, LINEAGE_TOPIC),
        _Record(11, other, LINEAGE_TOPIC),
        _Record(12, SAMPLED, LINEAGE_TOPIC),
        _Record(13, [], LINEAGE_TOPIC),
        _Record(14, SAMPLED, LINEAGE_TOPIC),
        _Record(15, SAMPLED, SPANS_TOPIC),
        _Record(16, unsampled, LINEAGE_TOPIC),
    ]
    before = time.time_ns()
    made = batch_store_spans(
        recorded.recorder, "store", records, 1, {"lineagehub.store": "clickhouse"}
    )
    finished = {f"{s.parent_span_id:016x}": s for s in recorded.finished()}
    assert made == 2 and set(finished) == {PRODUCER_SPAN, other_span}
    shared, alone = finished[PRODUCER_SPAN], finished[other_span]
    assert shared.attributes["messaging.batch.message_count"] == 3
    assert shared.attributes["messaging.kafka.offset"] == "10"
    assert shared.attributes["messaging.destination.partition.id"] == "2"
    assert alone.attributes["messaging.batch.message_count"] == 1
    assert alone.attributes["messaging.kafka.offset"] == "11"
    assert shared.attributes["lineagehub.store"] == "clickhouse"
    assert shared.kind == KIND_CONSUMER and shared.start_unix_nano == 1
    assert shared.span_id != alone.span_id
    for span in (shared, alone):  # the rest of each span: a child of its remote context
        assert f"{span.trace_id:032x}" == TRACE and span.parent_is_remote
        assert span.name == "store" and span.span_id not in (0, span.parent_span_id)
        assert span.end_unix_nano >= before and span.trace_flags == 0x01
        assert (span.status_code, span.status_message) == (STATUS_UNSET, "")
        assert span.events == []
    assert (shared.trace_state, alone.trace_state) == ("", "v=1")
