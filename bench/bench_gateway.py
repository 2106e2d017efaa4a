"""Events/s through the HTTP gateway into Kafka, acknowledgements on (acks=all).

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_gateway.py \\
        [--events 2000] [--concurrency 16] [--batch 50] [--marquez]

The gateway runs as its own process (one uvicorn worker, so one core for the app)
on a free loopback port, publishing to a private topic (the stack's lineage consumer
doesn't see the benchmark's events). The load comes from this process: `concurrency`
workers over one pooled httpx client, a bounded number of events.

* single: one event per POST (what the OpenLineage HTTP transport does); each answer
  arrives only after Kafka acknowledged the record.
* batch: `--batch` events per POST (a JSON array), per-item results.
* `--marquez`: the same single events POSTed straight to Marquez (MARQUEZ_URL) at the
  same concurrency, for comparison; this writes into Marquez.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
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


async def drive(
    url: str, bodies: Sequence[Any], concurrency: int, headers: dict[str, str], ok: set[int]
) -> tuple[float, list[float]]:
    """POST every body with `concurrency` workers; (wall seconds, per-request latencies)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker() -> None:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                r = await client.post(url, json=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if r.status_code not in ok:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(name: str, n_events: int, wall: float, latencies: list[float]) -> None:
    print(
        f"  {name:<34}{n_events / wall:>9,.0f} events/s   "
        f"p50 {pct(latencies, 0.50):7.2f} ms   p99 {pct(latencies, 0.99):7.2f} ms   "
        f"mean {statistics.fmean(latencies) * 1000:7.2f} ms   ({len(latencies)} requests)"
    )


async def main_async(args: argparse.Namespace) -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    if not bootstrap.startswith(("127.", "localhost", "[::1]")):
        print("bench_gateway: loopback Kafka only", file=sys.stderr)
        return 2
    topic = unique("bench-gateway")
    await create_topics(bootstrap, [topic])
    singles = events(args.events)
    batched = events(args.events)
    batches = [batched[i : i + args.batch] for i in range(0, len(batched), args.batch)]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "gateway.log"
        gateway_env = {
            "KAFKA_BOOTSTRAP": bootstrap,
            "LINEAGEHUB_GATEWAY_TOPIC": topic,
            "LINEAGEHUB_GATEWAY_TOKENS": f"{TOKEN}:lineage:write",
        }
        proc, url = start_gateway(gateway_env, log)
        try:
            # Warm-up: the producer connects, the first metadata round trip.
            await drive(f"{url}/api/v1/lineage", events(50), 4, AUTH, {201})
            print(
                f"gateway -> Kafka ({bootstrap}, topic {topic}, acks=all), "
                f"concurrency {args.concurrency}, {args.events} events, one gateway process"
            )
            wall, lat = await drive(f"{url}/api/v1/lineage", singles, args.concurrency, AUTH, {201})
            report("single event per POST", len(singles), wall, lat)
            wall, lat = await drive(f"{url}/api/v1/lineage", batches, args.concurrency, AUTH, {200})
            report(f"batches of {args.batch}", len(batched), wall, lat)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    offsets = await end_offsets(bootstrap, [topic])
    stored = sum(offsets.values())
    expected = 50 + 2 * args.events
    print(f"  records in {topic}: {stored} (expected {expected})")
    if args.marquez:
        marquez = os.environ.get("MARQUEZ_URL", "")
        if not marquez.startswith(("http://127.", "http://localhost")):
            print("  straight to Marquez: skipped (set a loopback MARQUEZ_URL)")
        else:
            direct = events(args.events)
            wall, lat = await drive(
                f"{marquez.rstrip('/')}/api/v1/lineage", direct, args.concurrency, {}, {200, 201}
            )
            report("straight to Marquez", len(direct), wall, lat)
    return 0 if stored == expected else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--marquez", action="store_true")
    args = p.parse_args(argv)
    if not 0 < args.events <= 100_000 or not 0 < args.concurrency <= 256:
        p.error("--events must be in 1..100000 and --concurrency in 1..256")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
