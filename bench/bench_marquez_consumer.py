"""The Marquez consumer's overhead over posting the same events to Marquez directly.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_marquez_consumer.py \\
        [--events 10000] [--partitions 2] [--lanes 8] [--delays 0,0.005,0.05] [--rounds 3] \\
        [--before /path/to/an/older/checkout]

* ours: `lineage-hub consume lineage` (its own process, as deployed) reads OpenLineage
  RunEvents (START + COMPLETE per run, schema, column lineage and statistics facets,
  keyed by run id) from a private topic of `--partitions` partitions, `--lanes` lanes
  each, and POSTs them to a stand-in that answers as Marquez does
  (`tests/marquez_standin.py`: 201 per stored event), committing as it goes.
* baseline, in the same run: the same events POSTed straight from a file by another
  process with the consumer's own HTTP client (`MarquezClient`: one pooled aiohttp
  session, the consumer's connection limit and timeouts), `partitions x lanes` POSTs in
  flight: the same concurrency, no Kafka, no check of the events.

Both are timed by the stand-in, from the first POST it receives to the last event
stored (start-up and the consumer's group join do not count). `--delays`: seconds the
stand-in takes per POST (0: the client's own CPU decides; a few ms: a Marquez writing
to PostgreSQL; 50 ms: the POSTs kept in flight decide, even on a loaded machine, where
the question is whether the consumer keeps every lane busy).
`--rounds` alternates ours and the baseline (each round a fresh consumer group; the
order flips every round) so that a machine whose load drifts hurts both alike.
`--before DIR`: a third client in every round, the consumer as another checkout (an
export of an older commit) has it, against the same topic and stand-in, so a change is
measured before and after in one session; its ratios to the baseline and to ours are
printed too.

Printed per run: events/s, the client process's CPU per event, the mean number of
POSTs the stand-in had in flight (what a slow store's throughput is set by), and the
stand-in's own CPU share (this process): near 1.0 the stand-in, not the client, sets
the pace and the round says little. Then the medians, the spread of the per-round
ratios, and the goal: ours within 5% of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
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
    in_flight: float  # mean POSTs the stand-in held, received and not yet answered
    standin_cpu: float  # the stand-in's CPU seconds per second (this process)


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
        own0, busy0 = time.process_time(), standin.in_flight_integral()
        await standin.until(lambda: len(standin.posts) >= total, within=600)
        t1, cpu1 = time.perf_counter(), _cpu_seconds(proc.pid)
        own1, busy1 = time.process_time(), standin.in_flight_integral()
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
    wall = t1 - t0
    return Rate(
        (total - 1) / wall,
        (cpu1 - cpu0) / (total - 1) * 1e6,
        (busy1 - busy0) / wall,
        (own1 - own0) / wall,
    )


ROOT = Path(__file__).resolve().parent.parent


def _python(*args: str, root: Path = ROOT) -> subprocess.Popen[bytes]:
    """This interpreter running `args` in the checkout at `root` (its code, not ours)."""
    return subprocess.Popen(
        [sys.executable, *args], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )


def _line(name: str, rate: Rate) -> str:
    return (
        f"  {name:8} {rate.events_per_s:8.0f} events/s  client CPU {rate.cpu_us_per_event:5.0f}"
        f" us/event  in flight {rate.in_flight:5.1f}  stand-in CPU {rate.standin_cpu:4.2f}"
    )


async def compare(
    bootstrap: str,
    events: list[tuple[bytes, bytes]],
    partitions: int,
    lanes: int,
    delay: float,
    rounds: int,
    before: Path | None = None,
) -> None:
    standin = MarquezStandin(delay=delay)
    url = await standin.start()
    topic = unique("bench-marquez")
    await create_topics(bootstrap, [topic], partitions=partitions)
    await produce(bootstrap, topic, events)
    concurrency = partitions * lanes

    def consumer(root: Path = ROOT) -> subprocess.Popen[bytes]:
        return _python(
            "-c",
            "import sys; from consumers.cli import main; sys.exit(main(sys.argv[1:]))",
            "lineage",
            f"--bootstrap={bootstrap}",
            f"--marquez-url={url}",
            f"--group={unique('bench-marquez-group')}",  # a fresh group reads it all again
            f"--topic={topic}",
            f"--lanes={lanes}",
            "--health-port=-1",
            "--log-level=WARNING",
            root=root,
        )

    print(f"stand-in answering each POST after {delay * 1e3:.0f} ms:")
    ours: list[Rate] = []
    base: list[Rate] = []
    old: list[Rate] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.bin"
        write_events(path, [value for _, value in events])

        def direct() -> subprocess.Popen[bytes]:
            return _python(__file__, "--direct", url, str(path), str(concurrency))

        try:
            for turn in range(rounds):
                clients: list[tuple[str, Callable[[], subprocess.Popen[bytes]], list[Rate]]]
                clients = [("ours", consumer, ours), ("baseline", direct, base)]
                if before is not None:
                    clients.insert(1, ("before", lambda: consumer(before), old))
                for name, start, rates in clients if turn % 2 == 0 else clients[::-1]:
                    rates.append(await timed_by_standin(standin, len(events), start))
                    print(f"  round {turn + 1}" + _line(name, rates[-1]))
        finally:
            await standin.stop()
    print(_line("ours", _median(ours)) + "  (medians)")
    if old:
        print(_line("before", _median(old)) + "  (medians)")
    print(_line("baseline", _median(base)) + "  (medians)")
    for name, rates in [("ours", ours), ("before", old)][: 2 if old else 1]:
        ratios = [o.events_per_s / b.events_per_s for o, b in zip(rates, base, strict=True)]
        cpu = [o.cpu_us_per_event / b.cpu_us_per_event for o, b in zip(rates, base, strict=True)]
        print(
            f"  ratio {name}/baseline: median {statistics.median(ratios):.3f} "
            f"(rounds {min(ratios):.3f}-{max(ratios):.3f}), overhead "
            f"{(1 / statistics.median(ratios) - 1) * 100:+.1f}% in time per event "
            f"(goal: <= +5%); CPU per event x{statistics.median(cpu):.2f} "
            f"(rounds {min(cpu):.2f}-{max(cpu):.2f})"
        )
    if old:
        cpu = [o.cpu_us_per_event / b.cpu_us_per_event for o, b in zip(ours, old, strict=True)]
        rate = [o.events_per_s / b.events_per_s for o, b in zip(ours, old, strict=True)]
        print(
            f"  ours/before: CPU per event x{statistics.median(cpu):.3f} "
            f"(rounds {min(cpu):.3f}-{max(cpu):.3f}), events/s x{statistics.median(rate):.3f} "
            f"(rounds {min(rate):.3f}-{max(rate):.3f})"
        )


def _median(rates: list[Rate]) -> Rate:
    return Rate(
        *(
            statistics.median(getattr(r, f) for r in rates)
            for f in ("events_per_s", "cpu_us_per_event", "in_flight", "standin_cpu")
        )
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--delays", default="0,0.005,0.05", help="stand-in seconds per POST")
    parser.add_argument("--rounds", type=int, default=3, help="ours/baseline pairs per delay")
    parser.add_argument(
        "--before", type=Path, help="another checkout whose consumer runs in every round too"
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    events = stage_events(args.events // 2)
    size = sum(len(v) for _, v in events) / len(events)
    print(
        f"{len(events)} OpenLineage RunEvents of {size:.0f} bytes; concurrency "
        f"{args.partitions * args.lanes} ({args.partitions} partitions x {args.lanes} lanes)"
    )
    for delay in (float(d) for d in args.delays.split(",")):
        await compare(
            bootstrap, events, args.partitions, args.lanes, delay, args.rounds, args.before
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--direct"]:
        _, _, base_url, events_file, workers = sys.argv
        sys.exit(1 if asyncio.run(post_directly(base_url, Path(events_file), int(workers))) else 0)
    asyncio.run(main())
