"""A store span while its record is stored (`record_span`): current inside, the
context before it restored after, ended either way; a failure marks it, a
cancellation (the consumer stopping) does not."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from opentelemetry import trace

from lineagehub.otlp_spans import STATUS_ERROR, STATUS_UNSET, OtlpSpan
from lineagehub.selftrace import remote_parent_sampling
from lineagehub.store_spans import SpanRecorder, record_span
from lineagehub.topics import LINEAGE_TOPIC

HEADERS = [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]


class Kept:
    def __init__(self) -> None:
        self.spans: list[OtlpSpan] = []

    def add(self, span: OtlpSpan) -> None:
        self.spans.append(span)

    def add_all(self, spans: Sequence[OtlpSpan]) -> None:
        self.spans.extend(spans)


def _recorder() -> tuple[SpanRecorder, Kept]:
    kept = Kept()
    return SpanRecorder("t", remote_parent_sampling({}), kept), kept  # type: ignore[arg-type]


def test_a_cancelled_store_ends_its_span_unmarked_and_restores_the_context() -> None:
    recorder, kept = _recorder()

    async def main() -> None:
        entered = asyncio.Event()

        async def store() -> None:
            with record_span(recorder, "store", LINEAGE_TOPIC, HEADERS, {}) as span:
                assert trace.get_current_span() is span
                entered.set()
                await asyncio.Event().wait()  # cancelled here

        task = asyncio.create_task(store())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (span,) = kept.spans
    assert span.status_code == STATUS_UNSET and span.events == []
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_nested_spans_restore_the_outer_one_and_a_failure_marks_only_its_own() -> None:
    recorder, kept = _recorder()
    with record_span(recorder, "outer", LINEAGE_TOPIC, HEADERS, {}) as outer:
        with (
            pytest.raises(ValueError),
            record_span(recorder, "inner", LINEAGE_TOPIC, HEADERS, {}) as inner,
        ):
            assert trace.get_current_span() is inner
            raise ValueError("bad")
        assert trace.get_current_span() is outer
    inner_span, outer_span = kept.spans
    assert (inner_span.name, inner_span.status_code) == ("inner", STATUS_ERROR)
    assert inner_span.status_message == "ValueError: bad"
    assert (outer_span.name, outer_span.status_code, outer_span.events) == (
        "outer",
        STATUS_UNSET,
        [],
    )
