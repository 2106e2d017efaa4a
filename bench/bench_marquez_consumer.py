"""The Marquez consumer's overhead over posting the same events to Marquez directly.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_marquez_consumer.py \\
        [--events 10000] [--partitions 2] [--lanes 8] [--delays 0,0.005]

* ours: `lineage-hub consume lineage` (its own process, as deployed) reads OpenLineage
  RunEvents (START + COMPLETE per run, schema, column lineage and statistics facets,
  keyed by run id) from a private topic of `--partitions` partitions, `--lanes` lanes
  each, and POSTs them to a stand-in that answers as Marquez does
  (`tests/marquez_standin.py`: 201 per stored event), committing as it goes.
* baseline, in the same run: the same events POSTed straight from a file by another
  process with the consumer's own HTTP client (`MarquezClient`: pooled httpx, same
  limits), `partitions x lanes` POSTs in flight: the same concurrency, no Kafka.

Both are timed by the stand-in, from the first POST it receives to the last event
stored (start-up and the consumer's group join do not count). `--delays`: seconds the
stand-in takes per POST (0: the client's own cost decides; a few ms: a Marquez writing
to PostgreSQL, where the question is whether the consumer keeps every lane busy). The
client process's CPU time per event is printed beside each rate: the stand-in runs in
this process and can be what limits both. Goal: ours within 5% of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_warehouse import stage_events
from consumers.lineage.consumer import LineageSettings
from consumers.lineage.marquez import MarquezClient, Outcome
from consumers.testkit import create_topics, produce, unique
from tests.marquez_standin import MarquezStandin

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def write_events(path: Path, events: list[bytes]) -> None:
    with path.open("wb") as out:
        for event in events:
            out.write(struct.pack(">I", len(event)) + event)


def read_events(path: Path) -> list[bytes]:
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return out


async def post_directly(url: str, path: Path, concurrency: int) -> int:
    """The baseline's client: `concurrency` workers POST the events with the consumer's
    own client and settings. Returns how many were not stored."""
    settings = LineageSettings(bootstrap="", marquez_url=url)
    client = MarquezClient(
        url, timeout=settings.http_timeout, max_connections=settings.max_connections
    )
    events = iter(read_events(path))
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for event in events:  # one shared iterator: each event is taken once
            result = await client.post(event)
            failed += result.outcome is not Outcome.STORED

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.aclose()
    return failed


@dataclass
class Rate:
    events_per_s: float
    cpu_us_per_event: float


async def timed_by_standin(
    standin: MarquezStandin, total: int, start: Callable[[], subprocess.Popen[bytes]]
) -> Rate:
    """Start a client process; time it from the first POST to `total` events stored."""
    standin.posts.clear()
    standin.received.clear()
    proc = start()
    try:
        await standin.until(lambda: bool(standin.received), within=120)
        t0, cpu0 = time.perf_counter(), _cpu_seconds(proc.pid)
        await standin.until(lambda: len(standin.posts) >= total, within=600)
        t1, cpu1 = time.perf_counter(), _cpu_seconds(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
    stored = {(p.run_id, p.event_type) for p in standin.stored}
    if len(stored) != total or len(standin.posts) != total:
        raise RuntimeError(
            f"{len(stored)} distinct events stored of {total}, {len(standin.posts)} POSTs"
        )
    # The first POST's event is outside the window: count the others.
    return Rate((total - 1) / (t1 - t0), (cpu1 - cpu0) / (total - 1) * 1e6)


def _python(*args: str) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, *args], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )


async def compare(
    bootstrap: str, events: list[tuple[bytes, bytes]], partitions: int, lanes: int, delay: float
) -> None:
    standin = MarquezStandin(delay=delay)
    url = await standin.start()
    topic, group = unique("bench-marquez"), unique("bench-marquez-group")
    await create_topics(bootstrap, [topic], partitions=partitions)
    await produce(bootstrap, topic, events)
    concurrency = partitions * lanes
    consumer = (
        "-c",
        "import sys; from consumers.cli import main; sys.exit(main(sys.argv[1:]))",
        "lineage",
        f"--bootstrap={bootstrap}",
        f"--marquez-url={url}",
        f"--group={group}",
        f"--topic={topic}",
        f"--lanes={lanes}",
        "--health-port=-1",
        "--log-level=WARNING",
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.bin"
        write_events(path, [value for _, value in events])
        direct = (__file__, "--direct", url, str(path), str(concurrency))
        try:
            ours = await timed_by_standin(standin, len(events), lambda: _python(*consumer))
            base = await timed_by_standin(standin, len(events), lambda: _python(*direct))
        finally:
            await standin.stop()
    ratio = ours.events_per_s / base.events_per_s
    print(f"stand-in answering each POST after {delay * 1e3:.0f} ms:")
    print(
        f"  ours: Kafka -> consume lineage -> POST  {ours.events_per_s:8.0f} events/s  "
        f"(client CPU {ours.cpu_us_per_event:6.0f} us/event)"
    )
    print(
        f"  baseline: direct POSTs                {base.events_per_s:8.0f} events/s  "
        f"(client CPU {base.cpu_us_per_event:6.0f} us/event)"
    )
    print(
        f"  ratio ours/baseline {ratio:.3f}: overhead {(1 / ratio - 1) * 100:+.1f}% "
        f"in time per event (goal: <= +5%); CPU per event x"
        f"{ours.cpu_us_per_event / base.cpu_us_per_event:.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--delays", default="0,0.005", help="stand-in seconds per POST")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    events = stage_events(args.events // 2)
    size = sum(len(v) for _, v in events) / len(events)
    print(
        f"{len(events)} OpenLineage RunEvents of {size:.0f} bytes; concurrency "
        f"{args.partitions * args.lanes} ({args.partitions} partitions x {args.lanes} lanes)"
    )
    for delay in (float(d) for d in args.delays.split(",")):
        await compare(bootstrap, events, args.partitions, args.lanes, delay)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--direct"]:
        _, _, base_url, events_file, workers = sys.argv
        sys.exit(1 if asyncio.run(post_directly(base_url, Path(events_file), int(workers))) else 0)
    asyncio.run(main())
