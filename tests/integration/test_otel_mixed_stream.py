"""A mixed stream at full speed: spans and metric requests, 1% of them malformed the ways
real bad input is (`consumers.otel.bad_input`), through a real Kafka into the otel
consumer (its own decoders, a batch at a time into Arrow) and chdb. Every record is
either stored once (its rows, no row twice) or dead-lettered once with its reason:
nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from consumers.dlq import header
from consumers.otel.backend import ChdbBackend
from consumers.otel.bad_input import METRIC_FAULTS, SPAN_FAULTS, Sent, mixed_metrics, mixed_spans
from consumers.otel.consumer import DECODERS, OtelConsumer, OtelSettings
from consumers.testkit import (
    create_topics,
    end_offsets,
    produce,
    read_all,
    unique,
    wait_drained,
)
from lineagehub.topics import METRICS_TOPIC, SPANS_TOPIC, dlq

pytestmark = pytest.mark.dataplane


async def count(store: ChdbBackend, sql: str) -> int:
    (row,) = await store.query(sql)
    return int(next(iter(row.values())))


async def stored_keys(store: ChdbBackend, sql: str) -> Counter[str]:
    """How many rows each key has (`sql` selects one `k` column per row)."""
    return Counter(str(r["k"]) for r in await store.query(sql))


def dead_letters(records: list[object]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for r in records:
        reason = header(r.headers, "dlq.reason")  # type: ignore[attr-defined]
        assert reason, "every dead letter names its reason"
        assert header(r.headers, "dlq.error"), "and says what was wrong"  # type: ignore[attr-defined]
        out[(r.key.decode(), reason.decode())] += 1  # type: ignore[attr-defined]
    return out


def expected_dead(sent: list[Sent]) -> Counter[tuple[str, str]]:
    return Counter((s.key.decode(), s.reason) for s in sent if s.reason is not None)


async def test_a_mixed_stream_is_stored_or_dead_lettered_each_record_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    spans_topic, metrics_topic = unique("mixed-spans"), unique("mixed-metrics")
    group = unique("mixed-group")
    await create_topics(bootstrap, [spans_topic, metrics_topic])
    spans = mixed_spans(3000, share=0.01, seed=1)
    metrics = mixed_metrics(2000, share=0.01, seed=2)
    bad_spans = [s for s in spans if s.reason]
    bad_metrics = [s for s in metrics if s.reason]
    assert len(bad_spans) == 30 and len(bad_metrics) == 20  # 1%, every fault in turn
    assert {s.reason for s in bad_spans} == {"decode", "invalid_span"}
    assert len(SPAN_FAULTS) == 6 and len(METRIC_FAULTS) == 6
    await produce(bootstrap, spans_topic, [(s.key, s.value) for s in spans])
    await produce(bootstrap, metrics_topic, [(s.key, s.value) for s in metrics])

    store = ChdbBackend(str(tmp_path / "chdb"))
    settings = OtelSettings(bootstrap=bootstrap, group=group, topics=(spans_topic, metrics_topic))
    decoders = {spans_topic: DECODERS[SPANS_TOPIC], metrics_topic: DECODERS[METRICS_TOPIC]}
    consumer = OtelConsumer(settings, store, decoders=decoders)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_drained(bootstrap, group, [spans_topic, metrics_topic], within=300)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    try:
        # Every good span request's spans, once each (its run id is its key).
        span_rows = await stored_keys(
            store, "SELECT SpanAttributes['lineagehub.run_id'] AS k FROM otel.otel_traces"
        )
        assert span_rows == Counter({s.key.decode(): s.rows for s in spans if not s.reason})
        distinct = "SELECT count(DISTINCT TraceId, SpanId) FROM otel.otel_traces"
        assert await count(store, distinct) == sum(span_rows.values())
        # Every good metric request's three points, once each, one in each table.
        for table in ("gauge", "sum", "histogram"):
            points = await stored_keys(
                store,
                f"SELECT Attributes['lineagehub.run_id'] AS k FROM otel.otel_metrics_{table}",
            )
            assert points == Counter(s.key.decode() for s in metrics if not s.reason)
    finally:
        await store.close()

    # Every malformed record dead-lettered once, with the reason it must get: the whole
    # dead-letter topic (the consumer has stopped; its sends were acknowledged).
    for topic, sent in ((spans_topic, spans), (metrics_topic, metrics)):
        held = sum((await end_offsets(bootstrap, [dlq(topic)])).values())
        dead = await read_all(bootstrap, dlq(topic), expect=held, within=60)
        assert len(dead) == held
        assert dead_letters(dead) == expected_dead(sent)
    assert consumer.stats.get("dead_lettered") == len(bad_spans) + len(bad_metrics)
