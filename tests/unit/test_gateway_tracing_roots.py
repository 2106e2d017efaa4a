"""Requests without a caller's context are decided before the SDK is asked for a span
(`gateway.tracing.RootSampling`): a sampled one is recorded with the very trace id the
decision was made for, an unsampled one makes no span and leaves nothing current, and a
sampler that may decide on more than the trace id leaves every request to the SDK."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes
from starlette.types import Message, Receive, Scope, Send

import gateway.tracing
from gateway.observed import ObservedRequests
from gateway.tracing import RootSampling, kafka_headers
from lineagehub.selftrace import root_decision
from lineagehub.tracelog import current_span_ids
from tests.gateway_traced import spans_of, traced

BOUND = TraceIdRatioBased.get_bound_for_rate(0.5)
#: Trace ids alternately under the ratio's bound (sampled) and over it (not).
IDS = [BOUND - 1 - i if i % 2 == 0 else BOUND + i for i in range(8)]


class ListedIds(RandomIdGenerator):
    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = list(ids)

    def generate_trace_id(self) -> int:
        return self.ids.pop(0)


class Seen:
    """What the handler saw as current: its span's ids, record headers and log ids."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, bool, list[tuple[str, bytes]], dict[str, str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = trace.get_current_span().get_span_context()
        self.requests.append(
            (context.trace_id, context.is_valid, kafka_headers(), current_span_ids())
        )
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _serve(app: ObservedRequests, n: int, headers: list[tuple[bytes, bytes]]) -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    for _ in range(n):
        scope = {"type": "http", "method": "POST", "path": "/api/v1/lineage", "headers": headers}
        await app(scope, receive, send)


def _provider(sampler: Sampler, spans: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(sampler=sampler, id_generator=ListedIds(IDS))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider


def test_a_sampled_root_keeps_the_trace_id_it_was_decided_for_and_the_rest_make_nothing() -> None:
    spans, seen = InMemorySpanExporter(), Seen()
    app = traced(seen, _provider(ParentBasedTraceIdRatio(0.5), spans))
    assert spans_of(app).roots is not None
    asyncio.run(_serve(app, len(IDS), []))

    recorded = [s.context.trace_id for s in spans.get_finished_spans() if s.context is not None]
    assert recorded == IDS[0::2]  # the drawn ids, not ids the SDK drew again
    assert all(s.kind is SpanKind.SERVER for s in spans.get_finished_spans())
    for trace_id, (current, valid, headers, log_ids) in zip(IDS, seen.requests, strict=True):
        if trace_id < BOUND:
            assert (current, valid) == (trace_id, True)
            assert headers[0][1].decode().split("-")[1] == f"{trace_id:032x}"
            assert log_ids["trace_id"] == f"{trace_id:032x}"
        else:  # no span, no context: no headers and no ids that no trace holds
            assert not valid
            assert headers == []
            assert log_ids == {}


def test_a_callers_context_is_still_decided_by_the_sdk() -> None:
    spans, seen = InMemorySpanExporter(), Seen()
    app = traced(seen, _provider(ParentBasedTraceIdRatio(0.0), spans))
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    asyncio.run(_serve(app, 2, [(b"traceparent", f"00-{caller}-00f067aa0ba902b7-01".encode())]))
    # The caller sampled it: followed although no root would be sampled at ratio 0.
    assert [s.context.trace_id for s in spans.get_finished_spans() if s.context] == [
        int(caller, 16)
    ] * 2
    assert [log_ids["trace_id"] for *_, log_ids in seen.requests] == [caller] * 2


class CountingSampler(Sampler):
    """A sampler deciding on more than the trace id: the middleware must not guess it."""

    def __init__(self) -> None:
        self.calls = 0

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        self.calls += 1
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.calls % 2 else Decision.DROP)

    def get_description(self) -> str:
        return "counting"


def test_an_unknown_sampler_decides_every_request_itself() -> None:
    spans, sampler = InMemorySpanExporter(), CountingSampler()
    app = traced(Seen(), _provider(sampler, spans))
    assert spans_of(app).roots is None
    asyncio.run(_serve(app, 4, []))
    assert sampler.calls == 4
    assert len(spans.get_finished_spans()) == 2
    known = _provider(ALWAYS_ON, spans)
    assert RootSampling.of(known.get_tracer("t"), known) is not None


def test_the_root_decision_is_the_samplers_own_for_every_trace_id() -> None:
    samplers: list[Sampler] = [
        ParentBasedTraceIdRatio(0.1),
        ParentBasedTraceIdRatio(0.5),
        TraceIdRatioBased(0.25),
        ALWAYS_ON,
        ALWAYS_OFF,
        DEFAULT_ON,
        DEFAULT_OFF,
    ]
    rng = random.Random(7)
    for sampler in samplers:
        keep = root_decision(sampler)
        assert keep is not None, sampler.get_description()
        bound = getattr(getattr(sampler, "_root", sampler), "bound", BOUND)
        edges = [bound - 1, bound, bound + 1, (7 << 64) | (bound - 1), (7 << 64) | bound]
        for trace_id in [*edges, *(rng.getrandbits(128) for _ in range(2000))]:
            expected = sampler.should_sample(Context(), trace_id, "r").decision is not Decision.DROP
            assert keep(trace_id) is expected, (sampler.get_description(), hex(trace_id))
    assert root_decision(CountingSampler()) is None
    assert root_decision(ParentBased(CountingSampler())) is None


def test_roots_with_the_sdks_own_ids_are_kept_at_the_ratio_with_whole_random_ids() -> None:
    """With the SDK's random ids and a ratio sampler, a root's low 64 bits are drawn
    first (`_ratio_draw`): what is kept must still be what the sampler keeps, at its
    ratio, with all 128 bits random, as the SDK's generator draws them."""
    spans, sampler = InMemorySpanExporter(), ParentBasedTraceIdRatio(0.25)
    provider = TracerProvider(sampler=sampler)  # RandomIdGenerator: the fast draw
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = traced(Seen(), provider)
    random.seed(11)
    asyncio.run(_serve(app, 4000, []))

    kept = [s.context.trace_id for s in spans.get_finished_spans() if s.context is not None]
    assert 880 <= len(kept) <= 1120  # 1000 expected; 4.4 standard deviations either side
    for trace_id in kept:
        assert sampler.should_sample(None, trace_id, "r").decision is Decision.RECORD_AND_SAMPLE
    assert len(set(kept)) == len(kept)
    high_bits = [trace_id >> 64 for trace_id in kept]
    assert 0.4 < sum(h >> 63 for h in high_bits) / len(kept) < 0.6  # the top bit: random


def test_a_root_drawn_as_the_invalid_id_zero_is_drawn_again_and_decided_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK's generator never gives trace id 0: it draws again (then the sampler
    decides on the new id). So does the fast draw."""
    bound = TraceIdRatioBased.get_bound_for_rate(0.5)
    draws = iter([0, 0, bound, 3, 9])  # low 0, high 0; then dropped; then kept
    monkeypatch.setattr(gateway.tracing, "getrandbits", lambda bits: next(draws))
    assert gateway.tracing._ratio_draw(bound) is None  # redrawn, then the new id dropped
    assert gateway.tracing._ratio_draw(bound) == 9 << 64 | 3
