"""`consume otel` against a real Kafka, into chdb (a real ClickHouse engine, in process)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from consumers.dlq import header
from consumers.librdkafka_consumer import CommitFailed
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import DECODERS, OtelConsumer, OtelSettings
from consumers.samples import metrics_request, run_trace, span, traces_request
from consumers.testkit import create_topics, produce, read_all, unique, wait_drained
from lineagehub.topics import METRICS_TOPIC, SPANS_TOPIC, dlq
from tests.crashing import CrashingBackend

pytestmark = pytest.mark.dataplane


@dataclass
class Topics:
    spans: str
    metrics: str
    group: str


@pytest.fixture
async def topics(env: dict[str, str]) -> Topics:
    t = Topics(unique("otel-spans"), unique("otel-metrics"), unique("otel-group"))
    await create_topics(env["KAFKA_BOOTSTRAP"], [t.spans, t.metrics])
    return t


@pytest.fixture
async def chdb(tmp_path: Path) -> AsyncIterator[ChdbBackend]:
    backend = ChdbBackend(str(tmp_path / "chdb"))
    yield backend
    await backend.close()


def settings(env: dict[str, str], t: Topics, **kw: Any) -> OtelSettings:
    return OtelSettings(
        bootstrap=env["KAFKA_BOOTSTRAP"],
        group=t.group,
        topics=(t.spans, t.metrics),
        max_batch_wait=0.3,
        **kw,
    )


def decoders(t: Topics) -> dict[str, Any]:
    """The consumer's own decoders (a batch at a time into Arrow) on the test's topics."""
    return {t.spans: DECODERS[SPANS_TOPIC], t.metrics: DECODERS[METRICS_TOPIC]}


async def start(consumer: OtelConsumer) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    return stop, task


def trace_key(request: ExportTraceServiceRequest) -> bytes:
    return request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex().encode()


async def count(b: ChdbBackend, sql: str) -> int:
    (row,) = await b.query(sql)
    return int(next(iter(row.values())))


async def test_spans_and_metrics_land_in_the_exporter_tables(
    env: dict[str, str], topics: Topics, chdb: ChdbBackend
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    runs = [str(uuid.uuid4()) for _ in range(5)]
    requests = [run_trace(r, children=2) for r in runs]
    await produce(
        bootstrap,
        topics.spans,
        [
            (
                r.resource_spans[0].scope_spans[0].spans[0].trace_id.hex().encode(),
                r.SerializeToString(),
            )
            for r in requests
        ],
    )
    await produce(
        bootstrap,
        topics.metrics,
        [(b"pipeline-runner", metrics_request(run_id=r).SerializeToString()) for r in runs],
    )
    consumer = OtelConsumer(settings(env, topics), chdb, decoders=decoders(topics))
    stop, task = await start(consumer)
    try:
        await wait_drained(bootstrap, topics.group, [topics.spans, topics.metrics], within=60)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    for request in requests:
        spans = request.resource_spans[0].scope_spans[0].spans
        trace_id = spans[0].trace_id.hex()
        rows = await chdb.query(
            "SELECT SpanId, ParentSpanId, SpanKind FROM otel.otel_traces "
            f"WHERE TraceId = '{trace_id}'"
        )
        got = {r["SpanId"]: r["ParentSpanId"] for r in rows}
        want = {s.span_id.hex(): s.parent_span_id.hex() for s in spans}
        assert got == want
        assert (
            await count(
                chdb,
                f"SELECT count() FROM otel.otel_traces_trace_id_ts WHERE TraceId = '{trace_id}'",
            )
            == 1
        )
    stages = await chdb.query(
        "SELECT RunId, Stage, RecordsIn, Status FROM otel.pipeline_runs FINAL ORDER BY RunId, Stage"
    )
    assert len(stages) == len(runs) * 4
    assert {(s["RunId"], s["Stage"]) for s in stages} == {
        (r, st) for r in runs for st in ("", "extract", "transform", "load")
    }
    for table in ("gauge", "sum", "histogram"):
        assert await count(chdb, f"SELECT count() FROM otel.otel_metrics_{table}") == len(runs)
    assert consumer.stats.get("processed") == 2 * len(runs)
    assert consumer.stats.get("inserted_rows", table="otel_traces") == len(runs) * 10


async def kill_mid_batch_then_restart(
    env: dict[str, str],
    topics: Topics,
    chdb: ChdbBackend,
    topic: str,
    values: list[bytes],
    table: str,
) -> None:
    """Consume `values` from `topic`, crash right after the second insert into `table`
    (no flush, no commit), restart: the batch whose insert landed but whose commit never
    happened comes back whole, under the same token, and ClickHouse drops it."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    await produce(bootstrap, topic, [(os.urandom(8), v) for v in values])
    crashing = CrashingBackend(chdb, crash_after=2, table=table)
    first = OtelConsumer(
        settings(env, topics, max_batch_messages=40),
        crashing,
        decoders=decoders(topics),
    )
    stop, task = await start(first)
    await asyncio.wait_for(crashing.crashed.wait(), 60)
    first.abort()  # the process is gone: no flush, no commit
    stop.set()
    await asyncio.wait_for(task, 30)
    crashed_token = crashing.tokens[-1]

    recording = CrashingBackend(chdb, crash_after=10**9, table=table)
    second = OtelConsumer(
        settings(env, topics, max_batch_messages=40),
        recording,
        decoders=decoders(topics),
    )
    stop, task = await start(second)
    try:
        await wait_drained(bootstrap, topics.group, [topic], within=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert crashed_token in recording.tokens


async def test_killed_mid_batch_then_restarted_loses_nothing_and_duplicates_nothing(
    env: dict[str, str], topics: Topics, chdb: ChdbBackend
) -> None:
    requests = [run_trace(str(uuid.uuid4()), children=1) for _ in range(300)]
    total_spans = sum(len(r.resource_spans[0].scope_spans[0].spans) for r in requests)
    values = [r.SerializeToString() for r in requests]
    await kill_mid_batch_then_restart(env, topics, chdb, topics.spans, values, "otel_traces")
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == total_spans
    assert await count(chdb, "SELECT count(DISTINCT SpanId) FROM otel.otel_traces") == total_spans
    assert await count(chdb, "SELECT count() FROM otel.pipeline_runs FINAL") == 300 * 4


async def test_metric_points_killed_mid_batch_are_stored_once(
    env: dict[str, str], topics: Topics, chdb: ChdbBackend
) -> None:
    """The same for metric points (Arrow slices of every metric table per record)."""
    runs = [str(uuid.uuid4()) for _ in range(300)]
    values = [metrics_request(run_id=r).SerializeToString() for r in runs]
    await kill_mid_batch_then_restart(env, topics, chdb, topics.metrics, values, "otel_metrics_sum")
    for table in ("gauge", "sum", "histogram"):
        rows = f"otel.otel_metrics_{table}"
        assert await count(chdb, f"SELECT count() FROM {rows}") == len(runs)
        run_ids = f"SELECT count(DISTINCT Attributes['lineagehub.run_id']) FROM {rows}"
        assert await count(chdb, run_ids) == len(runs)


async def test_undecodable_records_go_to_the_dlq_without_blocking_good_ones(
    env: dict[str, str], topics: Topics, chdb: ChdbBackend
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    good = run_trace(str(uuid.uuid4()), children=1).SerializeToString()
    bad_id = traces_request([span(b"\x01" * 15, b"\x02" * 8, "x")]).SerializeToString()
    junk: list[tuple[str, bytes]] = []
    for i in range(60):
        junk.append(("decode", good[: 10 + i]))  # truncated protobuf
        junk.append(("decode", b'{"resourceSpans": "json, not protobuf"}'))
        junk.append(("empty", b""))
        junk.append(("invalid_span", bad_id))
    junk.append(("decode", os.urandom(900_000)))  # huge and random
    messages: list[tuple[bytes | None, bytes | None]] = []
    goods = 0
    for i, (_, value) in enumerate(junk):
        messages.append((str(i).encode(), value))
        if i % 4 == 0:
            messages.append(
                (str(i).encode(), run_trace(str(uuid.uuid4()), children=0).SerializeToString())
            )
            goods += 1
    await produce(bootstrap, topics.spans, messages)
    consumer = OtelConsumer(settings(env, topics), chdb, decoders=decoders(topics))
    stop, task = await start(consumer)
    try:
        await wait_drained(bootstrap, topics.group, [topics.spans], within=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    dead = await read_all(bootstrap, dlq(topics.spans), expect=len(junk), within=30)
    assert len(dead) == len(junk)
    reasons = [header(r.headers, "dlq.reason") for r in dead]
    assert all(reasons), "every dead letter names its reason"
    assert sorted(r.decode() for r in reasons if r) == sorted(reason for reason, _ in junk)
    assert all(header(r.headers, "dlq.error") for r in dead)
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == goods * 4
    assert consumer.stats.get("dead_lettered") == len(junk)


class DecoderBug(BaseException):
    """Stands for what a decoder bug or a Rust panic raises: not a DecodeError."""


async def test_a_decoder_raising_anything_dead_letters_the_record_once_and_goes_on(
    env: dict[str, str], topics: Topics, chdb: ChdbBackend
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    poison = b"poison"
    calls: list[bytes | None] = []

    def buggy(raw: bytes | None) -> Any:
        calls.append(raw)
        if raw == poison:
            raise DecoderBug("deep inside the decoder")
        return DECODERS[SPANS_TOPIC](raw)

    goods = [run_trace(str(uuid.uuid4()), children=0).SerializeToString() for _ in range(2)]
    await produce(bootstrap, topics.spans, [(b"k", goods[0]), (b"k", poison), (b"k", goods[1])])
    ds: dict[str, Any] = {topics.spans: buggy, topics.metrics: DECODERS[METRICS_TOPIC]}
    consumer = OtelConsumer(settings(env, topics), chdb, decoders=ds)
    stop, task = await start(consumer)
    try:
        await wait_drained(bootstrap, topics.group, [topics.spans], within=60)
        assert not task.done(), "the consumer is still running"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    (dead,) = await read_all(bootstrap, dlq(topics.spans), expect=1, within=30)
    assert dead.value == poison
    assert header(dead.headers, "dlq.reason") == b"decoder_error"
    error = header(dead.headers, "dlq.error")
    assert error is not None and b"DecoderBug" in error
    assert calls.count(poison) == 1, "decoded once: dead-lettered, not replayed"
    assert consumer.stats.get("dead_lettered") == 1
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == 2 * 4


async def test_a_failed_commit_rewinds_the_partition_without_loss_or_duplicates(
    env: dict[str, str], topics: Topics, chdb: ChdbBackend
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    requests = [run_trace(str(uuid.uuid4()), children=0) for _ in range(200)]
    await produce(
        bootstrap, topics.spans, [(os.urandom(8), r.SerializeToString()) for r in requests]
    )
    consumer = OtelConsumer(
        settings(env, topics, max_batch_messages=30), chdb, decoders=decoders(topics)
    )
    stop, task = await start(consumer)
    for _ in range(200):
        if consumer._consumer is not None:
            break
        await asyncio.sleep(0.05)
    kafka = consumer._consumer
    assert kafka is not None
    real_commit = kafka.commit
    failed: list[Any] = []

    async def flaky_commit(offsets: Any) -> None:
        # Fail the first "batch done" commit, as a coordinator hiccup would.
        if not failed and all(getattr(m, "metadata", "x") == "" for m in offsets.values()):
            failed.append(offsets)
            raise CommitFailed("injected commit failure")
        await real_commit(offsets)

    kafka.commit = flaky_commit  # type: ignore[method-assign]
    try:
        await wait_drained(bootstrap, topics.group, [topics.spans], within=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert failed, "the injected failure happened"
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == 200 * 4
    assert await count(chdb, "SELECT count(DISTINCT SpanId) FROM otel.otel_traces") == 200 * 4


async def test_a_batch_cut_by_time_is_replayed_with_the_same_bounds(
    env: dict[str, str], topics: Topics, chdb: ChdbBackend
) -> None:
    """The `pending:` marker is what makes a replay repeat the crashed batch's bounds:
    a batch cut by time holds only what had arrived; by the restart more records wait
    behind it, and batching freely would cut a bigger batch under another token, which
    ClickHouse would store again (every span of the crashed batch twice)."""
    bootstrap = env["KAFKA_BOOTSTRAP"]
    first = [run_trace(str(uuid.uuid4()), children=0) for _ in range(5)]
    later_ones = [run_trace(str(uuid.uuid4()), children=0) for _ in range(40)]
    spans_per = len(first[0].resource_spans[0].scope_spans[0].spans)
    # One partition, so the later records queue right behind the crashed batch.
    single = Topics(unique("otel-spans-1p"), unique("otel-metrics-1p"), unique("g"))
    await create_topics(bootstrap, [single.spans, single.metrics], partitions=1)
    await produce(bootstrap, single.spans, [(b"k", r.SerializeToString()) for r in first])

    crashing = CrashingBackend(chdb, crash_after=1)
    consumer = OtelConsumer(
        settings(env, single, max_batch_messages=1000, max_batch_rows=100_000),
        crashing,
        decoders=decoders(single),
    )
    stop, task = await start(consumer)
    await asyncio.wait_for(crashing.crashed.wait(), 60)  # the time-cut batch is inserted
    consumer.abort()
    stop.set()
    await asyncio.wait_for(task, 30)
    (crashed_token,) = crashing.tokens
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == 5 * spans_per

    await produce(bootstrap, single.spans, [(b"k", r.SerializeToString()) for r in later_ones])
    recording = CrashingBackend(chdb, crash_after=10**9)
    second = OtelConsumer(
        settings(env, single, max_batch_messages=1000, max_batch_rows=100_000),
        recording,
        decoders=decoders(single),
    )
    stop, task = await start(second)
    try:
        await wait_drained(bootstrap, single.group, [single.spans], within=60)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # The replay was exactly the crashed batch (same token, dropped by ClickHouse) and
    # the later records came in a batch of their own.
    assert recording.tokens[0] == crashed_token
    total = (5 + 40) * spans_per
    assert await count(chdb, "SELECT count() FROM otel.otel_traces") == total
    assert await count(chdb, "SELECT count(DISTINCT SpanId) FROM otel.otel_traces") == total
