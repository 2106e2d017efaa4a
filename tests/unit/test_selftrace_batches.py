"""A consumer's store spans of one stored batch handed to the batch thread at once
(`SpanBatcher.add_all`): the same batches, order and queue bound as span by span, and a
flush that waits for the exporters' acknowledgements."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from lineagehub.otlp_spans import OtlpSpan
from lineagehub.selftrace import SelfTraceProvider
from lineagehub.span_batches import BatchSettings, SpanBatcher

HOUR_MS = 3_600_000


def _span(i: int) -> OtlpSpan:
    return OtlpSpan(f"store {i}", i + 1, i + 1, 7, 0, 1)


class Exports:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.arrived = threading.Event()

    def __call__(self, spans: Sequence[OtlpSpan]) -> None:
        self.batches.append([s.name for s in spans])
        self.arrived.set()


def test_a_handed_over_batch_leaves_when_it_fills_a_batch_and_keeps_its_order() -> None:
    exports = Exports()
    settings = BatchSettings(schedule_delay_ms=HOUR_MS, max_queue_size=16, max_export_batch_size=4)
    batcher = SpanBatcher(exports, settings, name="t")
    batcher.add_all([_span(0), _span(1)])
    batcher.add(_span(2))
    batcher.add_all([_span(3), _span(4)])  # crosses the batch size: the thread wakes
    assert exports.arrived.wait(30)  # long before the hour's delay
    batcher.shutdown()
    names = [n for batch in exports.batches for n in batch]
    assert names == [f"store {i}" for i in range(5)]
    assert exports.batches[0] == [f"store {i}" for i in range(4)]


def test_spans_past_the_queue_bound_are_dropped_and_counted() -> None:
    exports = Exports()
    settings = BatchSettings(schedule_delay_ms=HOUR_MS, max_queue_size=8, max_export_batch_size=8)
    batcher = SpanBatcher(exports, settings, name="t")
    # Held, the batch thread (woken when the queue fills a batch) cannot take spans off
    # the queue before the last one is added: else the last could find room.
    with batcher._exporting:
        batcher.add_all([_span(i) for i in range(6)])
        batcher.add_all([_span(i) for i in range(6, 11)])  # two fit, three do not
        batcher.add(_span(11))  # the queue is full
        assert batcher.dropped == 4
    batcher.shutdown()
    assert [n for batch in exports.batches for n in batch] == [f"store {i}" for i in range(8)]
    batcher.add_all([_span(12)])  # after shutdown: ignored, not counted as dropped
    assert batcher.dropped == 4


def test_force_flush_exports_then_waits_for_each_exporter() -> None:
    calls: list[str] = []

    def export(spans: Sequence[OtlpSpan]) -> None:
        calls.append(f"export {len(spans)}")

    def flush_a() -> bool:
        calls.append("flush a")
        raise RuntimeError("a broken exporter must not stop the others' flush")

    settings = BatchSettings(schedule_delay_ms=HOUR_MS)
    batcher = SpanBatcher(
        export, settings, name="t", on_flush=[flush_a, lambda: calls.append("flush b")]
    )
    batcher.add_all([_span(0), _span(1)])
    batcher.force_flush()
    assert calls == ["export 2", "flush a", "flush b"]
    batcher.shutdown()


def test_the_providers_force_flush_exports_what_its_batch_threads_hold() -> None:
    """`provider.force_flush()` is the SDK's way to say "export everything now" (a bench
    turn, a service before it exits): it must reach the spans recorded without the SDK
    too, not only those of its span processors."""
    exported = InMemorySpanExporter()
    settings = BatchSettings(schedule_delay_ms=HOUR_MS)
    provider = SelfTraceProvider(Resource({"service.name": "t"}), ALWAYS_ON, [exported], settings)
    provider.otlp_batcher("lineagehub.t").add_all([_span(0), _span(1)])
    assert exported.get_finished_spans() == ()  # an hour's delay: still held
    assert provider.force_flush()
    assert [s.name for s in exported.get_finished_spans()] == ["store 0", "store 1"]
    provider.shutdown()
