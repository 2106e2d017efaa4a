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

* bare aiokafka (the baseline, same run): the gateway's producer settings without
  HTTP or validation, `concurrency` senders, one record or `--batch` records a send.

* single: one event per POST (what the OpenLineage HTTP transport does); each answer
  arrives only after Kafka acknowledged the record.
* batch: `--batch` events per POST (a JSON array), per-item results.
* paced: an open-loop load at `--paced-single` / `--paced-batch` events/s (half the
  goals by default), latency counted from when each request was due.
* `--marquez`: the same single events POSTed straight to Marquez (MARQUEZ_URL) at the
  same concurrency, for comparison; this writes into Marquez.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_gateway_client import closed_loop, open_loop, post_request
from consumers.samples import lineage_event
from consumers.testkit import create_topics, end_offsets, unique
from gateway.serve import free_port

TOKEN = "bench-gateway-token-00000001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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
    settings: dict[str, str], log: Path, args: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """`lineage-hub gateway` as its own process on a free loopback port, configured by
    `settings` (environment variables) on top of a bare environment: no Kubernetes, no
    ClickHouse, no rate limit. Returns once it answers `/metrics`."""
    port = free_port()
    env = {
        **os.environ,
        "LINEAGEHUB_GATEWAY_RATE": "0",  # no rate limit for the benchmarks
        "KUBECONFIG": "",
        "KAFKA_BOOTSTRAP": "",
        "CLICKHOUSE_URL": "",
        "CLICKHOUSE_HTTP_URL": "",
        "MARQUEZ_URL": "",
        **settings,
    }
    code = "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--host", "127.0.0.1", "--port", str(port), *args],
        env=env,
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
    from gateway.kafka_producer import GatewayProducer

    producer = GatewayProducer(bootstrap)
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


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its child processes (the
    uvicorn workers): from /proc, so it counts only what ran, not what waited."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


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
    bare_single = report("bare aiokafka: 1 record, await ack", len(records), wall, lat)
    wall, lat = await bare_producer(bootstrap, topic, records, args.batch, args.concurrency)
    bare_batch = report(f"bare aiokafka: {args.batch} records, await", len(records), wall, lat)
    expected = 2 * len(records)
    lineage = "/api/v1/lineage"
    for workers in args.workers:
        singles = encoded(events(args.events))
        batched = events(args.events)
        batches = encoded([batched[i : i + args.batch] for i in range(0, args.events, args.batch)])
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "gateway.log"
            gateway_env = {
                "KAFKA_BOOTSTRAP": bootstrap,
                "LINEAGEHUB_GATEWAY_TOPIC": topic,
                "LINEAGEHUB_GATEWAY_TOKENS": f"{TOKEN}:lineage:write",
            }
            proc, url = start_gateway(gateway_env, log, ["--workers", str(workers)])
            try:
                # Warm-up: every worker's producer connects (the first metadata round trip).
                warm = requests_for(f"{url}{lineage}", encoded(events(50 * workers)))
                await closed_loop(url, warm, 8, {201})
                expected += 50 * workers
                print(f" gateway, {workers} worker process(es):")
                meter = CpuMeter(proc.pid)
                meter.start()
                singles_rq = requests_for(f"{url}{lineage}", singles)
                wall, lat = await closed_loop(url, singles_rq, args.concurrency, {201})
                report("single event per POST", args.events, wall, lat, bare_single, meter.stop())
                meter.start()
                batches_rq = requests_for(f"{url}{lineage}", batches)
                wall, lat = await closed_loop(url, batches_rq, args.concurrency, {200})
                report(f"batches of {args.batch}", args.events, wall, lat, bare_batch, meter.stop())
                expected += 2 * args.events
                for per_s, per_post in ((args.paced_single, 1), (args.paced_batch, args.batch)):
                    items = events(args.events)
                    bodies = (
                        encoded(items)
                        if per_post == 1
                        else encoded(
                            [items[i : i + per_post] for i in range(0, len(items), per_post)]
                        )
                    )
                    wall, lat = await open_loop(
                        url,
                        requests_for(f"{url}{lineage}", bodies),
                        per_s / per_post,
                        args.concurrency,
                        {201} if per_post == 1 else {200},
                    )
                    report(
                        f"paced at {per_s:,.0f} events/s, {per_post}/POST", len(items), wall, lat
                    )
                    expected += len(items)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
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
    p.add_argument("--paced-single", type=float, default=1500.0, help="events/s, one a POST")
    p.add_argument("--paced-batch", type=float, default=10000.0, help="events/s in batches")
    args = p.parse_args(argv)
    if not 0 < args.events <= 100_000 or not 0 < args.concurrency <= 256:
        p.error("--events must be in 1..100000 and --concurrency in 1..256")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
