"""Throughput of the consumers on this machine.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 MARQUEZ_URL=http://127.0.0.1:5000 \\
        .venv/bin/python bench/bench_consumers.py [--spans-messages 2000] [--events 2000]

* otel: OTLP span requests produced to a private topic, consumed into chdb with batch
  inserts; spans/s from the consumer's start to its last commit (decode-only and
  insert-only figures alongside, to show where the time goes).
* lineage: events/s through the consumer (Kafka -> validate -> POST, ordered per run)
  against plain concurrent POSTs of the same events to the same Marquez.
  Without MARQUEZ_URL (or with --stub-marquez) a loopback stub that answers 201 stands
  in: that measures the consumer's own overhead, not Marquez.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.otel.backend import ChdbBackend
from consumers.otel.consumer import OtelConsumer, OtelSettings
from consumers.otel.ddl import TABLES
from consumers.otel.decode import decode_metrics, decode_trace_tables
from consumers.samples import lineage_bytes, run_trace
from consumers.testkit import create_topics, produce, unique, wait_drained


async def bench_otel(bootstrap: str, messages: int, batch_rows: int) -> None:
    requests = [
        run_trace(str(uuid.uuid4()), children=2).SerializeToString() for _ in range(messages)
    ]
    spans_per = 10  # root + 3 stages + 2 children each
    total = messages * spans_per

    started = time.perf_counter()
    decoded = [decode_trace_tables(r) for r in requests]
    decode_s = time.perf_counter() - started

    spans_topic, metrics_topic, group = unique("bench-spans"), unique("bench-metrics"), unique("g")
    await create_topics(bootstrap, [spans_topic, metrics_topic])
    await produce(bootstrap, spans_topic, [(os.urandom(16).hex().encode(), r) for r in requests])

    with tempfile.TemporaryDirectory() as tmp:
        backend = ChdbBackend(str(Path(tmp) / "chdb"))
        await backend.setup()
        # Insert-only: the same rows straight into chdb in batches of `batch_rows` spans.
        rows = [row for tables in decoded for row in tables["otel_traces"]]
        started = time.perf_counter()
        for i in range(0, len(rows), batch_rows):
            await backend.insert(TABLES["otel_traces"], rows[i : i + batch_rows], f"bench/{i}")
        insert_s = time.perf_counter() - started
        await backend.query("TRUNCATE TABLE otel.otel_traces")

        settings = OtelSettings(
            bootstrap=bootstrap,
            group=group,
            topics=(spans_topic, metrics_topic),
            max_batch_rows=batch_rows,
            max_batch_wait=0.5,
        )
        consumer = OtelConsumer(
            settings,
            backend,
            decoders={spans_topic: decode_trace_tables, metrics_topic: decode_metrics},
        )
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run(stop))
        await wait_drained(bootstrap, group, [spans_topic], within=600)
        consume_s = time.perf_counter() - started
        stop.set()
        await task
        (row,) = await backend.query("SELECT count() AS n FROM otel.otel_traces")
        await backend.close()
    assert int(row["n"]) == total, row
    print(f"otel: {messages} messages, {total} spans, batches of <= {batch_rows} rows")
    print(f"  decode only          {total / decode_s:>10,.0f} spans/s")
    print(f"  chdb insert only     {total / insert_s:>10,.0f} spans/s")
    print(
        f"  Kafka -> chdb        {total / consume_s:>10,.0f} spans/s  ({consume_s:.2f}s, "
        f"{consumer.stats.get('batches'):.0f} batches, includes group join)"
    )


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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans-messages", type=int, default=2000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--stub-marquez", action="store_true")
    parser.add_argument("--only", choices=("otel", "lineage"))
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    marquez = None if args.stub_marquez else os.environ.get("MARQUEZ_URL")
    if args.only in (None, "otel"):
        await bench_otel(bootstrap, args.spans_messages, args.batch_rows)
    if args.only in (None, "lineage"):
        await bench_lineage(bootstrap, marquez, args.events)


if __name__ == "__main__":
    asyncio.run(main())
