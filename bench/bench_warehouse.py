"""The lineage warehouse on this machine: ingest, graph reads, storage.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_warehouse.py \\
        [--events 50000] [--datasets 100000] [--edges 1000000] [--queries 40] \\
        [--only ingest|graph] [--row-path] [--python-rules]

* ingest: OpenLineage RunEvents as a stage emits them (schema, column lineage and
  statistics facets; START + COMPLETE per run) produced to a private topic, then the
  warehouse writer (one process, one core for Python) from its start to its last
  commit, sustained (after its first commit: no group join). Baseline in the same
  run: a bare aiokafka consumer that reads the same records and only parses their
  JSON (the floor any consumer of this topic pays). The writer's CPU per event, until
  the merges it started settle, split as the Collector's per-core figures count theirs
  (`bench.chdb_cpu`): ClickHouse's part and ours, the figure the goal is read from.
  `--python-rules` runs the writer again without the compiled decoder (`native/`),
  in the same run, for the ratio between the two.
* graph: a synthetic graph of `--datasets` datasets and `--edges` job<->dataset edges
  (each job writes one dataset and reads from earlier ones), read at depth 5 up and 5
  down from random datasets through the gateway's reader (breadth-first, one query per
  hop). Baseline in the same run: the same walk as one recursive CTE over the edge
  table (`WITH RECURSIVE`, how Marquez's LineageDao walks its graph).
* storage: bytes on disk of the warehouse tables per million events.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chdb_cpu import Cpu, MeteredChdb, cpu_now, merges_settled
from bench.kafka_rates import Run, bare_consume, consume_sustained
from bench.thread_cpu import ThreadCpu
from consumers.gc_tuning import GC_THRESHOLD
from consumers.otel.backend import ChdbBackend
from consumers.otel.columns import ArrowRows
from consumers.otel.consumer import OtelConsumer, OtelSettings
from consumers.otel.decode import DecodeError
from consumers.testkit import create_topics, produce, unique
from consumers.warehouse import native
from consumers.warehouse.batch import decode_lineage_batch, decode_lineage_pending
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from lineagehub.lineage_ids import NodeId
from lineagehub.warehouse_reader import LineageReader, Walk
from tests.warehouse_events import dataset_in, dataset_out, later, new_run_id, run_event

FIELDS = [(f"col_{i}", "double" if i % 2 else "string") for i in range(12)]


def stage_events(n_runs: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n_runs):
        run, job = new_run_id(), ("lineage-hub", f"pipeline_{i % 500}.transform")
        src, dst = f"raw/orders_{i % 500}.csv", f"clean/orders_{i % 500}.parquet"
        columns = {f: [("file", src, f)] for f, _ in FIELDS}
        out.append(
            (
                run.encode(),
                run_event("START", run, job, later(i), inputs=[dataset_in("file", src, *FIELDS)]),
            )
        )
        out.append(
            (
                run.encode(),
                run_event(
                    "COMPLETE",
                    run,
                    job,
                    later(i + 1),
                    inputs=[dataset_in("file", src, *FIELDS)],
                    outputs=[dataset_out("file", dst, *FIELDS, rows=10_000, columns=columns)],
                ),
            )
        )
    return out


async def bench_ingest(
    bootstrap: str,
    n_events: int,
    backend: MeteredChdb,
    row_path: bool = False,
    python_rules: bool = False,
) -> None:
    events = stage_events(n_events // 2)
    size = sum(len(v) for _, v in events) / len(events)
    topic = unique("bench-openlineage")
    await create_topics(bootstrap, [topic])
    await produce(bootstrap, topic, events)

    sample = [value for _, value in events[:5000]]
    gc.set_threshold(*GC_THRESHOLD)  # as the writer runs (`OtelSettings.tune_gc`)
    decode_lineage_batch(sample[:10])  # pyarrow's first conversion imports modules
    started = time.process_time()
    for value in sample:
        decode_lineage(value)
    row_decode_rate = len(sample) / (time.process_time() - started)
    started = time.process_time()
    decode_lineage_batch(sample)
    decode_rate = len(sample) / (time.process_time() - started)
    compiled, native.decode_batch = native.decode_batch, None
    started = time.process_time()
    decode_lineage_batch(sample)
    python_rate = len(sample) / (time.process_time() - started)
    native.decode_batch = compiled

    cpu = time.process_time()
    baseline = await bare_consume(bootstrap, topic, len(events), lambda v: json.loads(v or b"null"))
    baseline_cpu = len(events) / (time.process_time() - cpu)
    settings = OtelSettings(
        bootstrap=bootstrap,
        group=unique("bench-warehouse"),
        topics=(topic,),
        max_batch_rows=20_000,
        max_batch_messages=5_000,
        max_batch_wait=0.5,
        fetch_max_records=5_000,
        name="warehouse",
    )
    run, ours_cpu, used, threads = await run_writer(bootstrap, settings, backend, len(events))
    ours = run.sustained
    print(f"ingest: {len(events)} events of {size:.0f} bytes (schema, column lineage, stats)")
    print(f"  decode only, batch path    {decode_rate:10.0f} events/s (CPU time, into Arrow)")
    print(
        f"    the Python rules alone   {python_rate:10.0f} events/s "
        f"(ratio {decode_rate / python_rate:.2f}; compiled decoder "
        f"{'installed' if compiled is not None else 'NOT installed'})"
    )
    print(f"  decode only, row path      {row_decode_rate:10.0f} events/s (CPU time, row dicts)")
    print(f"  warehouse writer           {ours:10.0f} events/s  (Kafka -> 3 tables, sustained)")
    print(
        f"  start to end               {len(events) / run.wall_s:10.0f} events/s  "
        f"({run.wall_s:.1f}s incl. group join, {run.batches:.0f} batches)"
    )
    print(f"  baseline: consume + parse  {baseline:10.0f} events/s")
    print(f"  ratio ours/baseline        {ours / baseline:10.2f}")
    # Per core: events over the CPU seconds this process spent (every thread, chdb's
    # too), which a busy machine does not distort as it does wall-clock rates.
    print(f"  per CPU second: ours       {ours_cpu:10.0f} events/s  (start to end)")
    print(f"  per CPU second: baseline   {baseline_cpu:10.0f} events/s")
    print(f"  ratio ours/baseline        {ours_cpu / baseline_cpu:10.2f}")
    print("  the writer's CPU by thread (event loop = main; Python workers share the process name)")
    for line in threads.lines(len(events)):
        print(line)
    writer_cpu(len(events), used)
    if python_rules:  # the same writer with the compiled decoder off, in the same run
        native.decode_batch = None
        try:
            settings.group = unique("bench-warehouse-python")
            slow, _, slow_used, _ = await run_writer(bootstrap, settings, backend, len(events))
        finally:
            native.decode_batch = compiled
        print(f"  the Python rules alone: writer {slow.sustained:10.0f} events/s  (sustained)")
        writer_cpu(len(events), slow_used)
        print(
            f"  ratio compiled/Python rules, ours per CPU second: {slow_used.ours / used.ours:.2f}x"
        )
    parts = await backend.query(
        "SELECT table, sum(bytes_on_disk) AS bytes, sum(rows) AS rows FROM system.parts "
        "WHERE database = 'otel' AND active AND startsWith(table, 'lineage_') GROUP BY table"
    )
    total = sum(int(p["bytes"]) for p in parts)
    raw = size * len(events)
    print(
        f"storage: {total / 1e6:.1f} MB on disk for {len(events)} events "
        f"({total / len(events) * 1e6 / 1e9:.2f} GB per million events; "
        f"{raw / total:.1f}x smaller than the raw JSON)"
    )
    for p in sorted(parts, key=lambda p: p["table"]):
        print(f"  {p['table']:<20} {int(p['bytes']) / 1e6:8.1f} MB  {int(p['rows']):>10} rows")
    await store_only(backend, sample)
    if row_path:  # the writer as it was: a dict per row, decoded as each record arrives
        settings.group = unique("bench-warehouse-rows")
        rows = OtelConsumer(
            settings, backend, decoders={topic: decode_lineage}, schema=LINEAGE_SCHEMA
        )
        cpu = time.process_time()
        old = await consume_sustained(rows, bootstrap, settings.group, [topic], len(events))
        old_cpu = len(events) / (time.process_time() - cpu)
        print(f"  row path (before): writer  {old.sustained:10.0f} events/s  (sustained)")
        print(
            f"  row path per CPU second    {old_cpu:10.0f} events/s  (ratio ours/row path "
            f"{ours_cpu / old_cpu:.2f})"
        )


async def run_writer(
    bootstrap: str, settings: OtelSettings, backend: MeteredChdb, events: int
) -> tuple[Run, float, Cpu, ThreadCpu]:
    """The warehouse writer over the topic from its start to its last commit: the run,
    its events per CPU second (the whole process), its CPU split until the merges it
    started settle, and its threads' CPU."""
    consumer = OtelConsumer(
        settings,
        backend,
        decoders={settings.topics[0]: decode_lineage_pending},
        schema=LINEAGE_SCHEMA,
    )
    threads = ThreadCpu()
    threads.start()
    cpu = time.process_time()
    split = cpu_now(backend)
    run = await consume_sustained(consumer, bootstrap, settings.group, settings.topics, events)
    per_cpu = events / (time.process_time() - cpu)
    threads.stop()
    await merges_settled(backend)
    return run, per_cpu, cpu_now(backend) - split, threads


def writer_cpu(events: int, used: Cpu) -> None:
    """The writer's CPU split as the Collector's per-core figures count theirs
    (`bench.chdb_cpu.COLLECTOR_NOTE`): ClickHouse's part (a server's, with
    `--clickhouse-backend=native`) and ours, until the merges it started settle."""

    def us(seconds: float) -> float:
        return seconds / events * 1e6

    print(
        f"  CPU per event (us), to merges settled: whole {us(used.process):.1f}, "
        f"ClickHouse {us(used.clickhouse):.1f}, ours {us(used.ours):.1f}"
    )
    print(
        f"  per CPU second: ours (Collector's cut) {events / used.ours:10.0f} events/s  "
        "(goal: >= 20000)"
    )


async def store_only(backend: ChdbBackend, sample: list[bytes]) -> None:
    """Decode one batch and insert each table (no Kafka), CPU time per part (chdb's
    threads included): where an event's cost goes. Run after the storage figures (it
    stores the sample again)."""
    cpu = time.process_time()
    decoded = decode_lineage_batch(sample)
    parts = {"decode": time.process_time() - cpu}
    first = decoded[0]
    assert not isinstance(first, DecodeError)
    token = unique("bench-store")
    # `lineage_ingest`'s insert includes its views: the events rows and the edges SQL computes.
    for name, rows in first.items():
        table = LINEAGE_SCHEMA.tables[name]
        cpu = time.process_time()
        await backend.insert(table, ArrowRows(table, rows.data), f"{token}/{name}")
        parts[name] = time.process_time() - cpu
    total = sum(parts.values())
    print(
        f"  store only (no Kafka), {len(sample)}-event batch: {len(sample) / total:8.0f} "
        "events per CPU second; us an event: "
        + ", ".join(f"{k} {v / len(sample) * 1e6:.1f}" for k, v in parts.items())
    )


_EDGE_COLUMNS = "(Src, Dst, Kind, RunId, EventTime, EventHash, JobNamespace, JobName)"


async def build_graph(backend: ChdbBackend, datasets: int, edges: int) -> None:
    """Job j writes dataset j and reads `fan_in` earlier datasets (a DAG); the edges go
    into `lineage_edges` (and its projection sorted by destination)."""
    fan_in = max(1, edges // datasets - 1)
    db = backend.database
    ds = "concat('dataset:s3://lake:d', toString({}))"
    job = "concat('job:bench:j', toString({}))"
    await backend.query(f"TRUNCATE TABLE {db}.lineage_edges")
    await backend.query(
        f"INSERT INTO {db}.lineage_edges {_EDGE_COLUMNS} "
        f"SELECT {job.format('number')}, {ds.format('number')}, 'io', "
        f"toString(generateUUIDv4()), now64(9), toString(number), 'bench', "
        f"concat('j', toString(number)) FROM numbers({datasets})"
    )
    source = "j - 1 - (cityHash64(j, i) % least(j, 1000))"
    await backend.query(
        f"INSERT INTO {db}.lineage_edges {_EDGE_COLUMNS} "
        f"SELECT {ds.format(source)}, {job.format('j')}, 'io', '', now64(9), "
        f"toString(j * 100 + i), 'bench', concat('j', toString(j)) "
        f"FROM (SELECT number % {datasets} + 1 AS j, intDiv(number, {datasets}) AS i "
        f"FROM numbers({(datasets - 1) * fan_in})) WHERE j < {datasets}"
    )
    await backend.query(f"OPTIMIZE TABLE {db}.lineage_edges FINAL")
    (row,) = await backend.query(f"SELECT count() AS n FROM {db}.lineage_edges")
    print(f"graph: {datasets} datasets, {datasets} jobs, {int(row['n'])} edges (fan-in {fan_in})")


def recursive_sql(db: str, start: str, hops: int, table: str, key: str, other: str) -> str:
    return f"""
WITH RECURSIVE walk AS (
    SELECT {start!r} AS node, 0 AS hop
    UNION ALL
    SELECT e.{other} AS node, w.hop + 1 AS hop
    FROM walk AS w JOIN {db}.{table} AS e ON e.{key} = w.node
    WHERE w.hop < {hops} AND e.Kind IN ('io', 'static')
)
SELECT count(DISTINCT node) AS n FROM (SELECT node FROM walk LIMIT 1000000)
SETTINGS allow_experimental_analyzer = 1, max_recursive_cte_evaluation_depth = 100
"""


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


async def bench_graph(backend: ChdbBackend, datasets: int, edges: int, queries: int) -> None:
    await build_graph(backend, datasets, edges)
    reader = LineageReader(backend.query, backend.database)
    rng = random.Random(7)
    starts = [rng.randrange(datasets // 2, datasets) for _ in range(queries)]
    medians: dict[int, float] = {}
    for max_nodes in (1_000, 10_000):
        times, nodes, cut = [], [], 0
        for d in starts:
            node = NodeId("dataset", "s3://lake", f"d{d}")
            t0 = time.perf_counter()
            graph = await reader.graph(Walk(node, 5, 5, max_nodes=max_nodes))
            times.append(time.perf_counter() - t0)
            nodes.append(len(graph["graph"]))
            cut += graph["truncated"]
        medians[max_nodes] = statistics.median(times)
        print(
            f"  ours: depth 5 up + 5 down, maxNodes {max_nodes:>6}: "
            f"p50 {medians[max_nodes] * 1e3:7.1f} ms  p95 {p95(times) * 1e3:7.1f} ms  "
            f"nodes {statistics.median(nodes):.0f} (truncated {cut}/{len(times)})"
        )
    base = []
    for d in starts[: max(3, queries // 8)]:
        t0 = time.perf_counter()
        for table, key, other in (
            ("lineage_edges", "Dst", "Src"),
            ("lineage_edges", "Src", "Dst"),
        ):
            start = f"dataset:s3://lake:d{d}"
            await backend.query(recursive_sql(backend.database, start, 10, table, key, other))
        base.append(time.perf_counter() - t0)
    median = statistics.median(base)
    print(
        f"  baseline: one WITH RECURSIVE per direction, unbounded: p50 {median * 1e3:7.1f} ms "
        f"(n={len(base)})"
    )
    print(
        f"  ratio baseline/ours at p50 (maxNodes 1000): {median / medians[1_000]:.1f}x; "
        "goal: p95 <= 100 ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--only", choices=("ingest", "graph"))
    parser.add_argument(
        "--row-path", action="store_true", help="also run the writer's row path, in the same run"
    )
    parser.add_argument(
        "--python-rules",
        action="store_true",
        help="also run the writer without the compiled decoder, in the same run",
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    with tempfile.TemporaryDirectory() as tmp:
        backend = MeteredChdb(str(Path(tmp) / "chdb"))
        await backend.setup(LINEAGE_SCHEMA.create("otel", 0))
        if args.only in (None, "ingest"):
            await bench_ingest(bootstrap, args.events, backend, args.row_path, args.python_rules)
        if args.only in (None, "graph"):
            await bench_graph(backend, args.datasets, args.edges, args.queries)
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
