"""Throughput of the consumers on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 MARQUEZ_URL=http://127.0.0.1:5000 \\
        .venv/bin/python bench/bench_consumers.py [--spans-messages 2000] [--events 2000]

* otel: OTLP span requests, then metric requests (every metric type), produced to a
  private topic and consumed into chdb (columns, one Arrow-table insert per table and
  batch), by the row decoder and by the consumer's Arrow batch decoder. Ours: spans
  (points) per second sustained, from the consumer's first commit to its last.
  Baseline in the same run: a bare aiokafka consumer reading and parsing the same
  records (`FromString`) without storing them. Decode-only (CPU time) and insert-only
  figures alongside, to show where the time goes. CPU per row, from the first insert
  until chdb's merges settle, for the consumer and for the same-run baseline of a direct
  insert of the same decoded rows in the same batches: the whole process, ClickHouse's
  part (its threads and its work inside our insert calls) and ours (the rest: the figure
  that compares with the Collector's per-core ones, see `COLLECTOR_NOTE`). Then a mixed
  stream (1% malformed, `consumers.otel.bad_input`): its sustained rate beside the clean
  one.
* lineage: events/s through the consumer (Kafka -> validate -> POST, ordered per run)
  against plain concurrent POSTs of the same events to the same Marquez.
  Without MARQUEZ_URL (or with --stub-marquez) a loopback stub that answers 201 stands
  in: that measures the consumer's own overhead, not Marquez.
* tracing (`--only tracing`): the warehouse writer (into chdb) and the lineage
  consumer (into the loopback stub) with self-tracing off and on, `--rounds` rounds
  each in a shuffled order, over the same records: a `--traced-share` of them
  carry a sampled `traceparent` (as the gateway gives the records of the requests it
  traces: one in ten by default), so each of those makes a `store` span, exported
  onto a private topic. The consumer's CPU per event, the Collector's cut as for the
  otel figures (its own threads: the event loop, the writer's decoding workers, the
  span threads, librdkafka's; not ClickHouse's threads nor its work inside our calls
  into chdb), on against off, with the median of the rounds' paired ratios and its
  bootstrap interval (the goal: within 5%); beside it the noise floor, on against off
  over the same records with no `traceparent` (no span made), measured in the same
  rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
from aiokafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from bench.chdb_cpu import (
    COLLECTOR_NOTE,
    MeteredChdb,
    cpu_now,
    merges_settled,
    print_cpu,
)
from bench.kafka_rates import bare_consume, consume_sustained
from bench.paired import paired, per_event_us
from consumers.gc_tuning import GC_THRESHOLD
from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.otel.arrow_metrics import decode_metric_requests
from consumers.otel.arrow_spans import decode_trace_requests
from consumers.otel.backend import ChdbBackend
from consumers.otel.bad_input import Sent, mixed_metrics, mixed_spans
from consumers.otel.columns import Pending, Rows, join
from consumers.otel.consumer import Decoder, OtelConsumer, OtelSettings
from consumers.otel.ddl import TABLES
from consumers.otel.decode import (
    METRIC_TABLES,
    DecodeError,
    decode_metric_columns,
    decode_trace_columns,
)
from consumers.samples import T0, lineage_bytes, metrics_request, run_trace
from consumers.testkit import create_topics, produce, unique, wait_drained
from consumers.warehouse.batch import decode_lineage_pending
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from lineagehub import selftrace
from lineagehub.store_spans import SpanRecorder
from lineagehub.tracecontext import format_traceparent

DEFAULT_GC_THRESHOLD = gc.get_threshold()


def metric_points(run_id: str, copies: int) -> bytes:
    """A request with every OTLP metric type: the sample gauge, sum and histogram with
    `copies` points each, plus a summary and an exponential histogram point each."""
    request = metrics_request(run_id=run_id)
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    for metric in metrics:
        points = getattr(metric, metric.WhichOneof("data") or "").data_points
        first = points[0]
        for i in range(1, copies):
            point = points.add()
            point.CopyFrom(first)
            point.attributes.add(key="copy", value=AnyValue(int_value=i))
    summary = metrics.add(name="lineagehub.stage.latency", unit="s")
    summary.summary.data_points.add(
        start_time_unix_nano=T0 - 10, time_unix_nano=T0, count=4, sum=2.5
    ).quantile_values.add(quantile=0.5, value=0.6)
    exp = metrics.add(name="lineagehub.stage.bytes", unit="By")
    exp.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    point = exp.exponential_histogram.data_points.add(
        start_time_unix_nano=T0 - 10, time_unix_nano=T0, count=3, sum=30.0, scale=2
    )
    point.positive.offset = 1
    point.positive.bucket_counts.extend([1, 2])
    return request.SerializeToString()


async def bench_otel_topic(
    bootstrap: str,
    what: str,
    requests: list[bytes],
    per_request: int,
    fullest: int,
    decoder: Decoder,
    parse: Callable[[bytes | None], object],
    tables: Sequence[str],
    batch_rows: int,
    counted: Sequence[str],
    tune_gc: bool,
) -> float:
    """One kind of OTLP record through the otel consumer into chdb, beside the baseline;
    with the consumer's GC thresholds (`tune_gc`) or CPython's defaults. Gives the
    sustained rate (rows/s). `fullest`: the most rows a request adds to one table, what
    the consumer's batches count against `batch_rows` (so the baseline's inserts are as
    big as the consumer's)."""
    gc.set_threshold(*(GC_THRESHOLD if tune_gc else DEFAULT_GC_THRESHOLD))
    total = len(requests) * per_request
    started = time.process_time()
    step = max(1, batch_rows // fullest)
    decoded = settle([decoder(r) for r in requests], step)
    decode_rate = total / (time.process_time() - started)

    topic, group = unique(f"bench-{what}"), unique("g")
    await create_topics(bootstrap, [topic])
    await produce(bootstrap, topic, [(os.urandom(16).hex().encode(), r) for r in requests])
    baseline = await bare_consume(bootstrap, topic, len(requests), parse) * per_request

    with tempfile.TemporaryDirectory() as tmp:
        backend = MeteredChdb(str(Path(tmp) / "chdb"))
        await backend.setup()
        # The baseline: the decoded rows straight into chdb, in the consumer's batches of
        # ~batch_rows, through the same backend call (Arrow stream, worker thread).
        before, started = cpu_now(backend), time.perf_counter()
        for i in range(0, len(decoded), step):
            for table in tables:
                parts = [d[table] for d in decoded[i : i + step]]
                await backend.insert(TABLES[table], join(TABLES[table], parts), f"bench/{i}")
        insert_rate = total / (time.perf_counter() - started)
        await merges_settled(backend)
        direct = cpu_now(backend) - before
        del decoded  # the consumer's process holds only the batches in flight
        for table in tables:
            await backend.query(f"TRUNCATE TABLE otel.{table}")
        await merges_settled(backend)

        settings = _settings(bootstrap, group, topic, batch_rows, step, tune_gc)
        consumer = OtelConsumer(settings, backend, decoders={topic: decoder})
        before = cpu_now(backend)
        with GcMeter() as collector:
            run = await consume_sustained(consumer, bootstrap, group, [topic], len(requests))
        await merges_settled(backend)
        used = cpu_now(backend) - before
        stored = 0
        for table in counted:
            (row,) = await backend.query(f"SELECT count() AS n FROM otel.{table}")
            stored += int(row["n"])
        await backend.close()
    gc.set_threshold(*DEFAULT_GC_THRESHOLD)
    assert stored == total, (stored, total)
    ours = run.sustained * per_request
    unit = f"{what}/s"
    how = f"{decoder.__name__}, GC thresholds {GC_THRESHOLD if tune_gc else DEFAULT_GC_THRESHOLD}"
    print(f"otel {what}, {how}: {len(requests)} records, {total} {what}")
    print(f"  batches of <= {batch_rows} rows")
    print(f"  decode only                      {decode_rate:>10,.0f} {unit} (CPU time)")
    print(f"  chdb insert only (Arrow stream)  {insert_rate:>10,.0f} {unit} (wall)")
    print(f"  baseline: consume + parse        {baseline:>10,.0f} {unit} (aiokafka, no store)")
    print(f"  Kafka -> chdb, sustained         {ours:>10,.0f} {unit}  ratio {ours / baseline:.2f}")
    print(
        f"  Kafka -> chdb, start to end      {total / run.wall_s:>10,.0f} {unit} "
        f"({run.wall_s:.1f}s incl. group join, {run.batches:.0f} batches)"
    )
    print_cpu(what, total, direct, used)
    print(
        f"    cyclic GC meanwhile: {collector.seconds * 1e3:,.0f} ms CPU "
        f"({collector.seconds / used.ours:.1%} of ours), collections by generation "
        f"{collector.collections}"
    )
    return ours


class GcMeter:
    """The cyclic collector's collections while in the block, and the CPU they took in
    the threads that ran them (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = 0.0
        self._started: dict[int, float] = {}

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        thread = threading.get_ident()
        if phase == "start":
            self._started[thread] = time.thread_time()
        elif thread in self._started:
            self.seconds += time.thread_time() - self._started.pop(thread)
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)


def _settings(
    bootstrap: str, group: str, topic: str, batch_rows: int, step: int, tune_gc: bool = True
) -> OtelSettings:
    return OtelSettings(
        bootstrap=bootstrap,
        group=group,
        topics=(topic,),
        max_batch_rows=batch_rows,
        max_batch_messages=max(2_000, step),
        fetch_max_records=max(2_000, step),
        max_batch_wait=0.5,
        tune_gc=tune_gc,
    )


async def bench_otel_mixed(
    bootstrap: str,
    what: str,
    sent: list[Sent],
    decoder: Decoder,
    tables: Sequence[str],
    batch_rows: int,
    clean: float,
) -> None:
    """The consumer (its GC thresholds) on a stream with malformed records among the good
    ones (`consumers.otel.bad_input`): its sustained rate beside the clean stream's of
    this run (`clean`), checked: every good record's rows stored, every bad one
    dead-lettered."""
    gc.set_threshold(*GC_THRESHOLD)
    topic, group = unique(f"bench-mixed-{what}"), unique("g")
    await create_topics(bootstrap, [topic])
    await produce(bootstrap, topic, [(s.key, s.value) for s in sent])
    rows = sum(s.rows for s in sent)
    bad = sum(1 for s in sent if s.reason)
    step = max(1, batch_rows * len(sent) // max(rows, 1))
    with tempfile.TemporaryDirectory() as tmp:
        backend = ChdbBackend(str(Path(tmp) / "chdb"))
        await backend.setup()
        settings = _settings(bootstrap, group, topic, batch_rows, step)
        consumer = OtelConsumer(settings, backend, decoders={topic: decoder})
        run = await consume_sustained(consumer, bootstrap, group, [topic], len(sent))
        stored = 0
        for table in tables:
            (row,) = await backend.query(f"SELECT count() AS n FROM otel.{table}")
            stored += int(row["n"])
        await backend.close()
    gc.set_threshold(*DEFAULT_GC_THRESHOLD)
    assert stored == rows, (stored, rows)
    assert consumer.stats.get("dead_lettered") == bad, (consumer.stats.get("dead_lettered"), bad)
    ours = run.sustained * rows / len(sent)
    unit = f"{what}/s"
    print(f"otel {what}, mixed stream: {len(sent)} records, {bad} malformed (dead-lettered)")
    print(f"  Kafka -> chdb, sustained         {ours:>10,.0f} {unit}  clean {clean:,.0f}")
    print(f"  mixed / clean                    {ours / clean:>10.2f}")


def settle(decoded: list[Mapping[str, Rows | Pending]], step: int) -> list[Mapping[str, Rows]]:
    """Records left to their batch (`columns.Pending`) decoded in batches of `step`
    records, as the consumer does when it flushes."""
    out: list[Mapping[str, Rows]] = []
    for i in range(0, len(decoded), step):
        chunk = decoded[i : i + step]
        pending = [t for tables in chunk for t in tables.values() if isinstance(t, Pending)]
        results = iter(pending[0].batch([p.raw for p in pending]) if pending else [])
        for tables in chunk:
            if any(isinstance(t, Pending) for t in tables.values()):
                result = next(results)
                assert not isinstance(result, DecodeError), result
                out.append(result)
            else:
                out.append({k: v for k, v in tables.items() if not isinstance(v, Pending)})
    return out


async def bench_otel(
    bootstrap: str, messages: int, batch_rows: int, metrics: bool, arrow_only: bool = False
) -> None:
    """Spans, then metric points; each with CPython's GC thresholds, then the consumer's
    (`arrow_only`: the consumer's own decoders alone, for profiling)."""
    spans = [run_trace(str(uuid.uuid4()), children=2).SerializeToString() for _ in range(messages)]
    # The row decoder as it was (CPython's GC thresholds), with the consumer's thresholds,
    # then the consumer's decoder (a batch at a time into Arrow).
    span_runs: list[tuple[Decoder, bool]] = [
        (decode_trace_columns, False),
        (decode_trace_columns, True),
        (decode_trace_requests, True),
    ]
    for decoder, tune_gc in span_runs[2:] if arrow_only else span_runs:
        clean = await bench_otel_topic(
            bootstrap,
            "spans",
            spans,
            10,  # root + 3 stages + 2 children each
            10,  # all in otel_traces
            decoder,
            lambda raw: ExportTraceServiceRequest.FromString(raw or b""),
            ("otel_traces", "pipeline_runs"),
            batch_rows,
            ("otel_traces",),
            tune_gc,
        )
    mixed = mixed_spans(messages, share=0.01, seed=1, children=2)
    await bench_otel_mixed(
        bootstrap, "spans", mixed, decode_trace_requests, ("otel_traces",), batch_rows, clean
    )
    if not metrics:
        print(COLLECTOR_NOTE)
        return
    copies = 4
    points = [metric_points(str(uuid.uuid4()), copies) for _ in range(messages)]
    # The row decoder (CPython's GC thresholds, then the consumer's), then the consumer's
    # decoder (a batch at a time into Arrow).
    point_runs: list[tuple[Decoder, bool]] = [
        (decode_metric_columns, False),
        (decode_metric_columns, True),
        (decode_metric_requests, True),
    ]
    for decoder, tune_gc in point_runs[2:] if arrow_only else point_runs:
        clean = await bench_otel_topic(
            bootstrap,
            "points",
            points,
            3 * copies + 2,
            copies,  # the gauge, sum and histogram tables' points
            decoder,
            lambda raw: ExportMetricsServiceRequest.FromString(raw or b""),
            [t.name for t in METRIC_TABLES],
            batch_rows,
            [t.name for t in METRIC_TABLES],
            tune_gc,
        )
    mixed = mixed_metrics(
        messages,
        share=0.01,
        seed=2,
        build=lambda key: ExportMetricsServiceRequest.FromString(metric_points(key, copies)),
    )
    tables = [t.name for t in METRIC_TABLES]
    await bench_otel_mixed(
        bootstrap, "points", mixed, decode_metric_requests, tables, batch_rows, clean
    )
    print(COLLECTOR_NOTE)


class StubMarquez:
    """Loopback HTTP server answering 201 to every POST /api/v1/lineage, 200 to GETs."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.posts = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"POST"):
                    self.posts += 1
                    writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def bench_lineage(bootstrap: str, marquez_url: str | None, events: int) -> None:
    stub: StubMarquez | None = None
    if marquez_url is None:
        stub = StubMarquez()
        marquez_url = await stub.start()
    runs = [str(uuid.uuid4()) for _ in range(events // 2)]
    ns = unique("bench")
    bodies = [
        (r.encode(), lineage_bytes(r, t, namespace=ns, job="bench.job"))
        for r in runs
        for t in ("START", "COMPLETE")
    ]

    # Direct: the same events POSTed concurrently (32 in flight), no Kafka, no ordering.
    sem = asyncio.Semaphore(32)
    async with httpx.AsyncClient(
        base_url=marquez_url, limits=httpx.Limits(max_connections=32), timeout=30
    ) as client:

        async def post(body: bytes) -> None:
            async with sem:
                response = await client.post(
                    "/api/v1/lineage", content=body, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post(b) for _, b in bodies))
        direct_s = time.perf_counter() - started

    topic, group = unique("bench-lineage"), unique("g")
    await create_topics(bootstrap, [topic])
    runs2 = [str(uuid.uuid4()) for _ in range(events // 2)]
    await produce(
        bootstrap,
        topic,
        [
            (r.encode(), lineage_bytes(r, t, namespace=ns, job="bench.job"))
            for r in runs2
            for t in ("START", "COMPLETE")
        ],
    )
    consumer = LineageConsumer(
        LineageSettings(bootstrap=bootstrap, marquez_url=marquez_url, group=group, topic=topic)
    )
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run(stop))
    await wait_drained(bootstrap, group, [topic], within=600)
    consume_s = time.perf_counter() - started
    stop.set()
    await task
    if stub is not None:
        await stub.stop()
    target = "loopback stub (201)" if stub else marquez_url
    print(f"lineage: {len(bodies)} events, {len(runs)} runs, against {target}")
    print(f"  direct POSTs (32 concurrent)     {len(bodies) / direct_s:>8,.0f} events/s")
    print(
        f"  Kafka -> validate -> POST        {len(bodies) / consume_s:>8,.0f} events/s  "
        f"({consume_s:.2f}s incl. group join; 3 partitions x 8 lanes, per-run order)"
    )


def traced_headers(n: int, share: float) -> list[list[tuple[str, bytes]] | None]:
    """Record headers as the gateway writes them: a sampled `traceparent` on `share` of
    the records (spread evenly), none on the rest."""
    every = round(1 / share) if share else 0
    return [
        [("traceparent", format_traceparent(random.getrandbits(127) + 1, i + 1, 1).encode())]
        if every and i % every == 0
        else None
        for i in range(n)
    ]


def _ours_cpu(backend: MeteredChdb) -> float:
    """CPU seconds of the consumers' own work in this process so far, the Collector's
    cut (`COLLECTOR_NOTE`, `Cpu.ours`): the threads that keep the process's name
    (Python's: the event loop, the writer's decoding workers and its Kafka consumer
    thread, the span batch thread and its Kafka poller; Arrow's pool) and librdkafka's C
    threads (named `rdk:...`: the writer's group member and the span exporter's
    producer), less ClickHouse's work inside our calls into chdb (`MeteredChdb`).
    ClickHouse's own threads are named, so left out."""
    return cpu_now(backend).ours


async def _consumer_cpu(
    consumer: OtelConsumer | LineageConsumer,
    total: int,
    recorder: SpanRecorder,
    backend: MeteredChdb,
) -> float:
    """CPU seconds `consumer` took to process `total` records, its spans exported: its
    own work, the Collector's cut (`_ours_cpu`; the wait below polls an in-process
    counter a hundred times a second, and the loopback Marquez stub answers in this
    event loop too, both counted alike with tracing on and off).

    Counted from the moment its partitions are assigned (before it fetches a record)
    until it has processed them all and its spans are exported: not its start (table
    checks, its Kafka clients' bootstrap, the group join) nor its stop (leaving the
    group, closing the clients), work that does not depend on the records or on
    tracing."""
    stop = asyncio.Event()
    gc.collect()  # the garbage of the runs before is not this run's to collect
    started: list[float] = []
    assigned = consumer._assigned  # a bench's look inside: where the fetching starts

    async def first_assignment(parts: set[TopicPartition]) -> None:
        if not started:
            started.append(_ours_cpu(backend))
        await assigned(parts)

    setattr(consumer, "_assigned", first_assignment)  # noqa: B010 (a method replaced)
    task = asyncio.create_task(consumer.run(stop))
    while consumer.stats.get("processed") < total:
        if task.done():
            raise RuntimeError(f"the consumer stopped at {consumer.stats.get('processed')}")
        await asyncio.sleep(0.01)
    recorder.force_flush()  # the spans' export is part of the cost (here in this thread)
    used = _ours_cpu(backend) - started[0]
    stop.set()
    await task
    return used


def _tracing_consumers(
    bootstrap: str,
    backend: ChdbBackend,
    marquez: str,
    topic: str,
    tracer: SpanRecorder | None,
) -> dict[str, OtelConsumer | LineageConsumer]:
    """A fresh warehouse writer and lineage consumer on `topic` (each its own group, so
    each reads the topic from the start), tracing with `tracer` (None: off)."""
    writer = OtelConsumer(
        OtelSettings(
            bootstrap=bootstrap,
            group=unique("bench-tracing-writer"),
            topics=(topic,),
            name="warehouse",
        ),
        backend,
        decoders={topic: decode_lineage_pending},
        schema=LINEAGE_SCHEMA,
    )
    writer.tracer = tracer
    lineage = LineageConsumer(
        LineageSettings(
            bootstrap=bootstrap,
            marquez_url=marquez,
            group=unique("bench-tracing-lineage"),
            topic=topic,
        ),
        tracer=tracer,
    )
    return {"warehouse writer": writer, "lineage consumer": lineage}


TRACING_NAMES = ("warehouse writer", "lineage consumer")


async def bench_tracing(
    bootstrap: str, events: int, rounds: int, share: float, names: Sequence[str] = TRACING_NAMES
) -> None:
    """Each round runs tracing off and on over records of which `share` carry a sampled
    parent (the comparison), and off and on over the same records with no parent at
    all (no span is made: the noise floor), the two in a shuffled order, each as four
    turns A B B A (which mode is A drawn each time): the machine's load drifting during
    a round falls on both modes alike, and a round's figure of a mode is its two turns."""
    spans_topic = unique("bench-tracing-spans")
    topics = {share: unique("bench-tracing"), 0.0: unique("bench-tracing-untraced")}
    await create_topics(bootstrap, [spans_topic, *topics.values()])
    runs = [str(uuid.uuid4()) for _ in range(events // 2)]
    records = [
        (r.encode(), lineage_bytes(r, t, namespace="bench-tracing", job="bench.job"))
        for r in runs
        for t in ("START", "COMPLETE")
    ]
    for each, topic in topics.items():
        await produce(bootstrap, topic, records, headers=traced_headers(len(records), each))
    environ = {selftrace.TOPIC_ENV: spans_topic}  # the default sampler: the record decides
    recorder = selftrace.span_recorder("bench-consumers", bootstrap, environ)
    assert recorder is not None
    stub = StubMarquez()
    marquez = await stub.start()
    # Each (consumer, mode, share): its CPU seconds in each counted round (two turns).
    turns: dict[tuple[str, str, float], list[float]] = {}
    shares = list(topics)
    order = random.Random(19)
    with tempfile.TemporaryDirectory() as tmp:
        backend = MeteredChdb(str(Path(tmp) / "chdb"))
        await backend.setup(LINEAGE_SCHEMA.create("otel", 0))
        # Round -1 warms up (chdb's first inserts, the span exporter's Kafka connection),
        # uncounted; then each round runs every mode, A B B A, shares in a random order.
        for round_ in range(-1, rounds):
            order.shuffle(shares)
            for each in shares:
                first, second = order.sample(["off", "on"], 2)
                used_in_round: dict[tuple[str, str, float], float] = {}
                for mode in (first, second, second, first):
                    tracer = recorder if mode == "on" else None
                    consumers = _tracing_consumers(
                        bootstrap, backend, marquez, topics[each], tracer
                    )
                    for name in names:
                        used = await _consumer_cpu(consumers[name], len(records), recorder, backend)
                        key = (name, mode, each)
                        used_in_round[key] = used_in_round.get(key, 0.0) + used
                if round_ >= 0:
                    for key, used in used_in_round.items():
                        turns.setdefault(key, []).append(used)
        await backend.close()
    await stub.stop()
    recorder.shutdown()
    n = len(records)
    print(
        f"self-tracing: {n} events x 2 turns x {rounds} rounds a mode, {share:.0%} with a "
        "sampled traceparent (each makes a store span); the noise floor: the same with none "
        "(tracing on, no span made); CPU per event of the median round; the consumer's own "
        "threads (event loop, decoding workers, span threads, librdkafka's) less "
        "ClickHouse's work in them: the Collector's cut"
    )
    n *= 2  # a round's figure is two turns
    for name in names:
        for each, label in ((share, f"traced {share:.0%}"), (0.0, "noise floor, traced 0%")):
            on, off = turns[name, "on", each], turns[name, "off", each]
            print(
                f"  {name:<17} {label:<23} on {per_event_us(on, n):7.1f} us vs off "
                f"{per_event_us(off, n):7.1f} us  {paired(on, off).text()}"
            )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans-messages", type=int, default=10_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--stub-marquez", action="store_true")
    parser.add_argument("--only", choices=("otel", "lineage", "tracing"))
    parser.add_argument("--rounds", type=int, default=12, help="tracing: rounds")
    parser.add_argument(
        "--tracing-consumer",
        choices=("both", *TRACING_NAMES),
        default="both",
        help="tracing: the consumers measured (one alone: more rounds in the same time)",
    )
    parser.add_argument(
        "--traced-share", type=float, default=0.1, help="tracing: records with a sampled parent"
    )
    parser.add_argument("--no-metrics", action="store_true", help="otel: spans only")
    parser.add_argument(
        "--arrow-only", action="store_true", help="otel: skip the row decoder's runs"
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    marquez = None if args.stub_marquez else os.environ.get("MARQUEZ_URL")
    if args.only in (None, "otel"):
        await bench_otel(
            bootstrap, args.spans_messages, args.batch_rows, not args.no_metrics, args.arrow_only
        )
    if args.only in (None, "lineage"):
        await bench_lineage(bootstrap, marquez, args.events)
    if args.only in (None, "tracing"):
        names = TRACING_NAMES if args.tracing_consumer == "both" else (args.tracing_consumer,)
        await bench_tracing(bootstrap, args.events, args.rounds, args.traced_share, names)


if __name__ == "__main__":
    asyncio.run(main())
