"""Events/s through the HTTP gateway into Kafka, acknowledgements on (acks=all).

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_gateway.py \\
        [--events 2000] [--concurrency 16] [--batch 50] [--marquez]

The gateway runs as its own process (`--workers 1,2`: one run per worker count, to
see how it scales) on a free loopback port, publishing to a private topic (the
stack's lineage consumer doesn't see the benchmark's events). The load comes from
this process: `concurrency` keep-alive connections of a lean HTTP/1.1 client
(`bench_gateway_client.py`: httpx would cost more CPU than the gateway), requests
built before the clock starts. Each line shows the CPU the gateway (all its worker
processes) and the client spent per event.

* bare aiokafka (the baseline, same run): the gateway's producer settings (acks=all,
  idempotent, linger 5 ms) on aiokafka, without HTTP or validation, `concurrency`
  senders, one record or `--batch` records a send.

* single: one event per POST (what the OpenLineage HTTP transport does); each answer
  arrives only after Kafka acknowledged the record.
* batch: `--batch` events per POST (a JSON array), per-item results.
* paced: an open-loop load at `--paced-single` / `--paced-batch` events/s (half the
  goals by default), latency counted from when each request was due.
* self-tracing (`--tracing off,off-again,none,tenth,all`, each mode its own gateway in
  the same run): off (OTEL_SDK_DISABLED), tracing on with no request sampled (the noise floor:
  no span made), one in ten traced (the default sampler), every request traced; the
  spans go to a private topic. Every gateway is started first; then each round loads
  one gateway at a time, in turns A B C C B A (the order drawn each round), so a
  gateway never shares the cores with another one's load, and load on the machine
  drifting during a round falls on every mode alike; a mode's figure in a round is
  its two turns. A turn is `--turn-events` events one a POST, or 4x that in batches
  (a batch event costs the gateway a fifth of a single one), so a turn's CPU is
  hundreds of milliseconds, far above the clocks' resolution and the gateway's idle
  threads. The last lines compare each mode with off: throughput and the gateway's
  CPU per event (its process tree's CPU clocks; the median round), with the median of
  the rounds' paired ratios and its bootstrap interval. `off-again` is a second
  gateway with tracing off, the A/A control: what two identical gateways differ by
  in the same run (on a shared 2-core VM, up to ~6% in one run: each process's
  own heap layout and placement), the floor under any mode's figure. `--restarts K`
  starts every gateway afresh K times, the rounds split between them, so that
  per-process offset falls into the rounds' ratios (and their interval) instead of
  sitting under all of them. `--pin` runs the load on the first CPU and every gateway
  on the others, so each gateway runs where the others do and never beside the load:
  pinned on this project's 2-core VM, the A/A control agreed to 0.5% over all rounds
  where unpinned gateways differed by up to 6% (Kafka still runs where the kernel
  puts it: `taskset -a -p -c 0 <its pid>` keeps it off the gateways' core too).
* `--before DIR`: each mode's gateway also runs from DIR, another tree of this project
  (an export of an older commit: `git archive REV | tar -x -C DIR`), taking its turns
  in the same rounds as this tree's; the last lines compare each mode with its older
  self (the median of the rounds' paired CPU ratios). The bench and its baseline are
  this tree's; only the served gateway is DIR's.
* `--marquez`: the same single events POSTed straight to Marquez (MARQUEZ_URL) at the
  same concurrency, for comparison; this writes into Marquez.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_gateway_client import closed_loop, open_loop, post_request
from bench.paired import paired
from consumers.samples import lineage_event
from consumers.testkit import create_topics, end_offsets, unique
from gateway.serve import free_port

TOKEN = "bench-gateway-token-00000001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The baseline's batch size: what the gateway's aiokafka producer used.
BATCH = 256 * 1024


def events(n: int, per_run: int = 3) -> list[dict[str, Any]]:
    out = []
    states = ("START", "RUNNING", "COMPLETE")
    run_id = str(uuid.uuid4())
    for i in range(n):
        if i % per_run == 0:
            run_id = str(uuid.uuid4())
        out.append(lineage_event(run_id, states[i % per_run], namespace="bench-gateway"))
    return out


def start_gateway(
    settings: dict[str, str],
    log: Path,
    args: Sequence[str] = (),
    tree: Path | None = None,
    cores: set[int] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`lineage-hub gateway` as its own process on a free loopback port, configured by
    `settings` (environment variables) on top of a bare environment: no Kubernetes, no
    ClickHouse, no rate limit. `tree`: serve the gateway of another checkout of the
    project (its packages first on the path) instead of this one's. `cores`: the CPUs
    the gateway (its threads and worker processes) may run on, from its first
    instruction (`--pin`). Returns once it answers `/metrics`."""
    port = free_port()
    served = {"PYTHONPATH": str(tree)} if tree is not None else {}
    env = {
        **os.environ,
        "LINEAGEHUB_GATEWAY_RATE": "0",  # no rate limit for the benchmarks
        "KUBECONFIG": "",
        "KAFKA_BOOTSTRAP": "",
        "CLICKHOUSE_URL": "",
        "CLICKHOUSE_HTTP_URL": "",
        "MARQUEZ_URL": "",
        **settings,
        **served,
    }
    code = "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
    # taskset (util-linux) sets the CPUs before the interpreter's first instruction.
    pinned = [] if cores is None else ["taskset", "-c", ",".join(map(str, sorted(cores)))]
    proc = subprocess.Popen(
        [*pinned, sys.executable, "-c", code, "--host", "127.0.0.1", "--port", str(port), *args],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/metrics", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise TimeoutError(f"the gateway did not answer within 30s; see {log}")


def requests_for(url: str, bodies: Sequence[bytes]) -> list[bytes]:
    headers = {**AUTH, "Content-Type": "application/json"}
    return [post_request(url, body, headers) for body in bodies]


async def bare_producer(
    bootstrap: str, topic: str, records: Sequence[tuple[str, bytes]], per_send: int, tasks: int
) -> tuple[float, list[float]]:
    """The baseline: aiokafka alone with the gateway's producer settings (acks=all,
    idempotent, the same linger), `tasks` senders, each appending `per_send` records and
    then awaiting their acknowledgements."""
    from lineagehub.telemetry.publisher import KafkaPublisher

    producer = KafkaPublisher(bootstrap, "bench-bare-aiokafka", linger_ms=5, max_batch_size=BATCH)
    await producer.start()
    queue = [records[i : i + per_send] for i in range(0, len(records), per_send)][::-1]
    latencies: list[float] = []
    try:

        async def sender() -> None:
            while queue:
                group = queue.pop()
                started = time.perf_counter()
                acks = [await producer.enqueue(topic, key, value) for key, value in group]
                await asyncio.gather(*acks)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(tasks)))
        return time.perf_counter() - started, latencies
    finally:
        await producer.stop()


def process_cpu_clock(pid: int) -> int:
    """The clock id of a process's CPU time on Linux (MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)): what clock_getcpuclockid(3) returns, which Python does not offer."""
    return ((~pid) << 3) | 2


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid` and its child processes (the uvicorn workers),
    each from its CPU-time clock: counts only what ran, in nanoseconds. The /proc ticks
    (10 ms) are too coarse here: a round's batch phase costs the gateway ~50 ms of CPU,
    so a tick either way moved its CPU per event by a fifth."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            pids.append(int(stat.parent.name))
    total = 0
    for each in pids:
        try:
            total += time.clock_gettime_ns(process_cpu_clock(each))
        except OSError:  # a worker that has exited
            continue
    return total / 1e9


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(
    name: str,
    n_events: int,
    wall: float,
    latencies: list[float],
    base: float = 0,
    cpu: tuple[float, float] | None = None,
) -> float:
    """One line; `cpu`: (the gateway's, this process's) CPU seconds in the phase, per event."""
    rate = n_events / wall
    ratio = f"  {rate / base:5.2f}x of bare" if base else ""
    used = ""
    if cpu:
        gateway_us, client_us = (c / n_events * 1e6 for c in cpu)
        used = f"  cpu/event: gateway {gateway_us:5.0f} us, client {client_us:5.0f} us"
    print(
        f"  {name:<40}{rate:>9,.0f} events/s   "
        f"p50 {pct(latencies, 0.50):7.2f} ms   p99 {pct(latencies, 0.99):7.2f} ms   "
        f"({len(latencies)} requests){ratio}{used}"
    )
    return rate


class CpuMeter:
    """CPU seconds used by the gateway (its process tree) and by this process between
    `start()` and `stop()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._at = (0.0, 0.0)

    def start(self) -> None:
        self._at = (tree_cpu_s(self.pid), time.process_time())

    def stop(self) -> tuple[float, float]:
        return tree_cpu_s(self.pid) - self._at[0], time.process_time() - self._at[1]


def encoded(items: Sequence[Any]) -> list[bytes]:
    return [json.dumps(item).encode() for item in items]


#: Self-tracing modes, each a gateway started with this environment: off (the SDK
#: disabled), off again (the A/A control: a second gateway like the first), on with no
#: request sampled (the noise floor: no span made), one in ten (the default sampler: no
#: request of the bench carries a traceparent, so each is a root decision), and every
#: request sampled. Spans go to a private topic, not `otel-spans`.
TRACING: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "off-again": {"OTEL_SDK_DISABLED": "true"},
    "none": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
    "all": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "tenth": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
}
LINEAGEHUB_SELFTRACE_TOPIC = "LINEAGEHUB_SELFTRACE_TOPIC"


@dataclass
class Tally:
    """What one closed-loop phase of one gateway added up to over the rounds."""

    events: int = 0
    wall: float = 0.0
    gateway_cpu: float = 0.0
    client_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # gateway CPU per event, each round
    #: The round in progress: (events, gateway CPU seconds) of its turns so far.
    _round: tuple[int, float] = (0, 0.0)

    def add(self, n: int, wall: float, latencies: list[float], cpu: tuple[float, float]) -> None:
        """One turn."""
        self.events += n
        self.wall += wall
        self.latencies += latencies
        self.gateway_cpu += cpu[0]
        self.client_cpu += cpu[1]
        self._round = (self._round[0] + n, self._round[1] + cpu[0])

    def end_round(self) -> None:
        """The round's figure: its turns' CPU over their events."""
        events, cpu = self._round
        if events:
            self.rounds.append(cpu / events)
        self._round = (0, 0.0)

    @property
    def median_cpu_per_event(self) -> float:
        """The middle round's: other load on the machine only ever adds CPU to a round,
        so a few disturbed rounds move the total but not the median."""
        ordered = sorted(self.rounds)
        return ordered[len(ordered) // 2]

    @property
    def rate(self) -> float:
        return self.events / self.wall

    @property
    def cpu_per_event(self) -> float:
        return self.gateway_cpu / self.events


LINEAGE = "/api/v1/lineage"


def gateway_env(bootstrap: str, topic: str, mode: str, spans_topic: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": bootstrap,
        "LINEAGEHUB_GATEWAY_TOPIC": topic,
        "LINEAGEHUB_GATEWAY_TOKENS": f"{TOKEN}:lineage:write",
        **TRACING[mode],
        LINEAGEHUB_SELFTRACE_TOPIC: spans_topic,
        # One hash seed for every mode's gateway: its dicts and sets then lay out alike,
        # which a per-process random seed would make differ for the whole run.
        "PYTHONHASHSEED": "0",
    }


#: A batch turn's events over a single turn's: a batched event costs the gateway about a
#: fifth of a single one, so its turns take as much CPU.
BATCH_TURN = 4


async def tracing_modes(
    args: argparse.Namespace, bootstrap: str, topic: str, workers: int, tmp: Path
) -> int:
    """One gateway per tracing mode, all started first; each of `--rounds` rounds loads
    one gateway at a time (`alternating_turns`), every gateway started afresh
    `--restarts` times, the rounds split between them. Then each mode's paced phases,
    one gateway after another. Prints each mode's figures and each against `off`;
    returns the records sent."""
    spans_topic = unique("bench-gateway-spans")
    await create_topics(bootstrap, [spans_topic])
    tallies: dict[str, dict[str, Tally]] = {}
    order = random.Random(19)
    sent = 0
    blocks = [len(part) for part in _split(range(args.rounds), args.restarts)]
    for i, rounds in enumerate(blocks):
        gateways, warmed = await _start_gateways(args, bootstrap, topic, spans_topic, workers, tmp)
        sent += warmed
        try:
            for mode in gateways:
                tallies.setdefault(mode, {"single": Tally(), "batch": Tally()})
            sent += await alternating_turns(args, gateways, tallies, rounds, order)
            if i < len(blocks) - 1:
                continue
            for mode, (proc, url) in gateways.items():
                print(f" gateway, {workers} worker process(es), self-tracing {mode}:")
                for phase, tally in tallies[mode].items():
                    name = (
                        "single event per POST" if phase == "single" else f"batches of {args.batch}"
                    )
                    base = args.bare_single if phase == "single" else args.bare_batch
                    cpu = (tally.gateway_cpu, tally.client_cpu)
                    report(name, tally.events, tally.wall, tally.latencies, base, cpu)
                sent += await paced_phases(args, proc.pid, url)
        finally:
            for proc, _ in gateways.values():
                proc.terminate()
            for proc, _ in gateways.values():
                proc.wait(timeout=30)
    compare_tracing(tallies)
    compare_trees(tallies)
    return sent


def _split(items: range, parts: int) -> list[range]:
    """`items` in `parts` runs of (nearly) equal length, none empty."""
    parts = min(parts, len(items))
    bounds = [len(items) * k // parts for k in range(parts + 1)]
    return [items[bounds[k] : bounds[k + 1]] for k in range(parts)]


async def _start_gateways(
    args: argparse.Namespace,
    bootstrap: str,
    topic: str,
    spans_topic: str,
    workers: int,
    tmp: Path,
) -> tuple[dict[str, tuple[subprocess.Popen[bytes], str]], int]:
    """A gateway for each mode (and its `--before` twin), each warmed up: its producer
    connected and the request path's code and caches warm before the first turn.
    Returns them and the records the warm-up sent."""
    gateways: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    sent = 0
    try:
        for mode in args.tracing:
            env = gateway_env(bootstrap, topic, mode, spans_topic)
            served = ["--workers", str(workers)]
            cores = args.gateway_cores
            gateways[mode] = start_gateway(env, tmp / f"{mode}.log", served, cores=cores)
            if args.before is not None:
                log = tmp / f"{mode}-before.log"
                gateways[f"{mode}{BEFORE}"] = start_gateway(env, log, served, args.before, cores)
        for _, url in gateways.values():
            warm = max(200, args.turn_events // 4) * workers
            await closed_loop(url, requests_for(f"{url}{LINEAGE}", encoded(events(warm))), 8, {201})
            sent += warm
    except BaseException:
        for proc, _ in gateways.values():
            proc.terminate()
            proc.wait(timeout=30)
        raise
    return gateways, sent


async def alternating_turns(
    args: argparse.Namespace,
    gateways: Mapping[str, tuple[subprocess.Popen[bytes], str]],
    tallies: dict[str, dict[str, Tally]],
    rounds: int,
    order: random.Random,
) -> int:
    """`rounds` rounds; in each, for each phase (`single`, `batch`), every gateway
    takes two turns alone at the closed loop, in the order A B C .. C B A (the order
    drawn each round from `order`, seeded): whatever the machine does meanwhile drifts
    over a round about evenly, and falls on each mode's pair of turns alike. Returns
    the events sent."""
    labels = list(gateways)
    sent = 0
    for _ in range(rounds):
        order.shuffle(labels)
        for phase in ("single", "batch"):
            n = args.turn_events * (1 if phase == "single" else BATCH_TURN)
            for label in [*labels, *reversed(labels)]:
                proc, url = gateways[label]
                await one_turn(args, proc.pid, url, tallies[label][phase], phase, n)
                sent += n
            for label in labels:
                tallies[label][phase].end_round()
    return sent


async def one_turn(
    args: argparse.Namespace, pid: int, url: str, tally: Tally, phase: str, n: int
) -> None:
    """`n` events through one gateway alone at the closed loop (`single`: one a POST;
    `batch`: `--batch` a POST), the requests built before its CPU is read."""
    ok = {201} if phase == "single" else {200}
    items = events(n)
    bodies = (
        encoded(items)
        if phase == "single"
        else encoded([items[i : i + args.batch] for i in range(0, n, args.batch)])
    )
    requests = requests_for(f"{url}{LINEAGE}", bodies)
    gc.collect()  # the garbage of building the requests is not the turn's to collect
    meter = CpuMeter(pid)
    meter.start()
    wall, latencies = await closed_loop(url, requests, args.concurrency, ok)
    tally.add(n, wall, latencies, meter.stop())


async def paced_phases(args: argparse.Namespace, pid: int, url: str) -> int:
    """The open-loop loads (latency at a given rate, and the gateway's CPU per event at
    that rate: a rate two gateways both keep up with compares their CPU on equal
    terms, where a closed loop's batching differs with each one's speed); returns the
    events sent."""
    sent = 0
    for per_s, per_post in ((args.paced_single, 1), (args.paced_batch, args.batch)):
        items = events(args.events)
        bodies = (
            encoded(items)
            if per_post == 1
            else encoded([items[i : i + per_post] for i in range(0, len(items), per_post)])
        )
        meter = CpuMeter(pid)
        meter.start()
        wall, lat = await open_loop(
            url,
            requests_for(f"{url}{LINEAGE}", bodies),
            per_s / per_post,
            args.concurrency,
            {201} if per_post == 1 else {200},
        )
        cpu = meter.stop()
        name = f"paced at {per_s:,.0f} events/s, {per_post}/POST"
        report(name, len(items), wall, lat, cpu=cpu)
        sent += len(items)
    return sent


#: The label suffix of a gateway served from the `--before` tree.
BEFORE = " (before)"


def compare_trees(tallies: dict[str, dict[str, Tally]]) -> None:
    """Each mode of this tree against the same mode served from the `--before` tree,
    measured in turns of the same rounds: throughput and the gateway's CPU per
    event, with the median paired ratio (below zero: this tree spends less)."""
    for label, phases in tallies.items():
        before = tallies.get(f"{label}{BEFORE}")
        if before is None:
            continue
        for phase, tally in phases.items():
            old = before[phase]
            print(
                f"  {label:<6} now vs before, {phase:<6}: throughput {tally.rate:>7,.0f} vs "
                f"{old.rate:>7,.0f} events/s; gateway cpu/event median round "
                f"{tally.median_cpu_per_event * 1e6:5.0f} vs {old.median_cpu_per_event * 1e6:5.0f}"
                f" us, {paired(tally.rounds, old.rounds).text()}"
            )


def compare_tracing(tallies: dict[str, dict[str, Tally]]) -> None:
    """Each tracing mode against `off`, measured in turns of the same rounds: throughput
    and the gateway's CPU per event (all rounds, and the median round), with the median
    paired ratio and its interval (the goal: within 5%). `none` makes no span: its
    ratio is the noise floor of the others."""
    base = tallies.get("off")
    if base is None:
        return
    for mode, phases in tallies.items():
        if mode == "off" or mode.endswith(BEFORE):
            continue
        label = {"none": "none (noise floor)", "off-again": "off again (A/A)"}.get(mode, mode)
        for phase, tally in phases.items():
            off = base[phase]
            print(
                f"  self-tracing {label:<18} vs off, {phase:<6}: throughput {tally.rate:>7,.0f} "
                f"vs {off.rate:>7,.0f} events/s ({tally.rate / off.rate - 1:+6.1%}); gateway "
                f"cpu/event median round {tally.median_cpu_per_event * 1e6:5.0f} vs "
                f"{off.median_cpu_per_event * 1e6:5.0f} us, all rounds "
                f"{tally.cpu_per_event / off.cpu_per_event - 1:+6.1%}, "
                f"{paired(tally.rounds, off.rounds).text()}"
            )


async def main_async(args: argparse.Namespace) -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    if not bootstrap.startswith(("127.", "localhost", "[::1]")):
        print("bench_gateway: loopback Kafka only", file=sys.stderr)
        return 2
    topic = unique("bench-gateway")
    await create_topics(bootstrap, [topic])
    print(
        f"-> Kafka {bootstrap}, topic {topic}, acks=all, concurrency {args.concurrency}, "
        f"{args.events} events a phase; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    )
    base_events = events(args.events)
    records = [(e["run"]["runId"], json.dumps(e).encode()) for e in base_events]
    wall, lat = await bare_producer(bootstrap, topic, records, 1, args.concurrency)
    args.bare_single = report("bare aiokafka: 1 record, await ack", len(records), wall, lat)
    wall, lat = await bare_producer(bootstrap, topic, records, args.batch, args.concurrency)
    args.bare_batch = report(f"bare aiokafka: {args.batch} records, await", len(records), wall, lat)
    expected = 2 * len(records)
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            expected += await tracing_modes(args, bootstrap, topic, workers, Path(tmp))
    offsets = await end_offsets(bootstrap, [topic])
    stored = sum(offsets.values())
    print(f"  records in {topic}: {stored} (expected {expected})")
    if args.marquez:
        marquez = os.environ.get("MARQUEZ_URL", "")
        if not marquez.startswith(("http://127.", "http://localhost")):
            print("  straight to Marquez: skipped (set a loopback MARQUEZ_URL)")
        else:
            target = f"{marquez.rstrip('/')}/api/v1/lineage"
            direct = [
                post_request(target, body, {"Content-Type": "application/json"})
                for body in encoded(events(args.events))
            ]
            wall, lat = await closed_loop(target, direct, args.concurrency, {200, 201})
            report("straight to Marquez", len(direct), wall, lat)
    return 0 if stored == expected else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--marquez", action="store_true")
    p.add_argument(
        "--workers",
        type=lambda text: [int(w) for w in text.split(",")],
        default=[1],
        help="gateway worker processes, a list to compare (1,2)",
    )
    p.add_argument(
        "--tracing",
        type=lambda text: text.split(","),
        default=list(TRACING),
        help=f"self-tracing modes to compare, of {','.join(TRACING)} (each its own gateway)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="tracing: rounds, each giving every gateway two turns a phase (A B .. B A)",
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="tracing: start every gateway afresh this many times, the rounds split between them",
    )
    p.add_argument(
        "--turn-events",
        type=int,
        default=2000,
        help=f"tracing: events a turn one a POST ({BATCH_TURN}x that in batches)",
    )
    p.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another tree of the project whose gateway runs beside this one's, to compare",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="run this process (the load) on the first CPU and every gateway on the others",
    )
    p.add_argument("--paced-single", type=float, default=1500.0, help="events/s, one a POST")
    p.add_argument("--paced-batch", type=float, default=10000.0, help="events/s in batches")
    args = p.parse_args(argv)
    if not set(args.tracing) <= set(TRACING):
        p.error(f"--tracing takes {','.join(TRACING)}")
    if args.before is not None and not (args.before / "gateway" / "cli.py").is_file():
        p.error(f"--before {args.before}: not a tree of this project (no gateway/cli.py)")
    if not 0 < args.events <= 100_000 or not 0 < args.concurrency <= 256:
        p.error("--events must be in 1..100000 and --concurrency in 1..256")
    if not 0 < args.turn_events <= 100_000 or args.turn_events % args.batch:
        p.error(f"--turn-events must be in 1..100000 and a multiple of --batch ({args.batch})")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if not 1 <= args.restarts <= args.rounds:
        p.error("--restarts must be in 1..--rounds")
    args.gateway_cores = None
    if args.pin:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            p.error("--pin needs at least two CPUs (one for the load, the rest for gateways)")
        os.sched_setaffinity(0, {allowed[0]})
        args.gateway_cores = set(allowed[1:])
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
