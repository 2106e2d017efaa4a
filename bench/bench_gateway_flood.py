"""The gateway's memory under a flood of unauthenticated requests.

    nice -n 10 .venv/bin/python bench/bench_gateway_flood.py \\
        [--requests 2000] [--large 200] [--concurrency 32] [--body-mib 5]

A gateway process of its own on a free loopback port (no Kafka, no Kubernetes: the
flood is refused before any backend matters), its resident set sampled from
/proc/<pid>/status every few milliseconds. Phases, each with its peak RSS:

* idle: the gateway started and answering, nothing else;
* baseline: `--requests` tiny authenticated GETs (the health verdict with detail);
* flood: the same number of unauthenticated requests: `--large` POSTs with a
  `--body-mib` body to each write route (half with Content-Length, half chunked,
  so the size is not known up front), and reads of every kind without a token
  (API reads, random paths, random methods, the health probe);
* for contrast, `--large` / 4 authenticated POSTs of a 5 MiB-class JSON batch: what
  a request costs once it is let in, which an unauthenticated one must never reach.

Printed: peak RSS per phase, the flood's peak beside the baseline's and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_gateway import start_gateway
from consumers.samples import lineage_event

TOKEN = "bench-gateway-flood-token-01"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MiB = 1024 * 1024
CHUNK = 64 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Samples a process's RSS in a thread; `phase()` returns the peak since the last."""

    def __init__(self, pid: int, every_s: float = 0.005) -> None:
        self.pid = pid
        self.every_s = every_s
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_bytes(self.pid)
            with self._lock:
                self._peak = max(self._peak, value)
            self._stop.wait(self.every_s)

    def start(self) -> None:
        self._thread.start()

    def phase(self) -> int:
        with self._lock:
            peak, self._peak = self._peak, rss_bytes(self.pid)
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


Request = Callable[[httpx.AsyncClient], Awaitable[str]]


async def run_all(url: str, requests: list[Request], concurrency: int) -> Counter[str]:
    """Each request's outcome: its status code, or the transport error's name (a server
    that answers before reading a large body may close the connection under it)."""
    outcomes: Counter[str] = Counter()
    queue = list(reversed(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            while queue:
                request = queue.pop()
                try:
                    outcomes[await request(client)] += 1
                except httpx.TransportError as exc:
                    outcomes[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def tiny_authenticated(n: int) -> list[Request]:
    async def get(client: httpx.AsyncClient) -> str:
        return str((await client.get("/api/v1/health", headers=AUTH)).status_code)

    return [get] * n


def unauthenticated_flood(n: int, large: int, body: bytes, seed: int = 1) -> list[Request]:
    rng = random.Random(seed)

    def post(path: str, chunked: bool) -> Request:
        async def send(client: httpx.AsyncClient) -> str:
            if chunked:

                async def chunks() -> AsyncIterator[bytes]:
                    for i in range(0, len(body), CHUNK):
                        yield body[i : i + CHUNK]

                response = await client.post(path, content=chunks())
            else:
                response = await client.post(path, content=body)
            return str(response.status_code)

        return send

    def read(method: str, path: str) -> Request:
        async def send(client: httpx.AsyncClient) -> str:
            return str((await client.request(method, path)).status_code)

        return send

    out: list[Request] = []
    for i in range(large):
        path = ("/api/v1/lineage", "/api/v1/pipeline/run")[i % 2]
        out.append(post(path, chunked=bool(i // 2 % 2)))

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(10))

    reads = [
        lambda: read("GET", "/api/v1/pipeline/runs"),
        lambda: read("GET", f"/api/v1/pipeline/run/{word()}"),
        lambda: read("GET", f"/api/v1/lineage/search?q={word()}"),
        lambda: read("GET", "/api/v1/health"),
        lambda: read("GET", f"/{word()}/{word()}"),
        lambda: read(word().upper(), f"/api/v1/{word()}"),
    ]
    out.extend(rng.choice(reads)() for _ in range(n - large))
    rng.shuffle(out)
    return out


def batch_body(target_bytes: int) -> bytes:
    """A JSON array of lineage events of about `target_bytes` (more than the batch limit
    of items is fine: the gateway parses it before it counts them)."""
    event = lineage_event("0190f3b0-7c1a-7d2e-8f00-0123456789ab", "START", namespace="flood")
    one = json.dumps(event).encode()
    count = max(1, target_bytes // (len(one) + 1))
    return b"[" + b",".join([one] * count) + b"]"


def authenticated_large(n: int, body: bytes) -> list[Request]:
    async def post(client: httpx.AsyncClient) -> str:
        headers = {**AUTH, "Content-Type": "application/json"}
        return str(
            (await client.post("/api/v1/lineage", content=body, headers=headers)).status_code
        )

    return [post] * n


def mib(n: int) -> str:
    return f"{n / MiB:8.1f} MiB"


async def main_async(args: argparse.Namespace) -> int:
    body = b"x" * (args.body_mib * MiB)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "gateway.log"
        settings = {
            "LINEAGEHUB_GATEWAY_TOKENS": f"{TOKEN}:lineage:write,runs:read",
            "LINEAGEHUB_GATEWAY_REQUIRED": "",
        }
        proc, url = start_gateway(settings, log, ["--log-level", "WARNING"])
        sampler = PeakRss(proc.pid)
        sampler.start()
        try:
            await asyncio.sleep(args.idle_s)  # the idle phase: nothing is sent
            idle = sampler.phase()
            print(
                f"gateway {url} (pid {proc.pid}); {args.requests} requests a phase at "
                f"concurrency {args.concurrency}; large bodies {args.body_mib} MiB"
            )
            print(f"  {'idle':<46}{'':>30} peak RSS {mib(idle)}")
            phases = [
                ("baseline: tiny authenticated GETs", tiny_authenticated(args.requests)),
                (
                    f"flood: unauthenticated ({args.large} large POSTs)",
                    unauthenticated_flood(args.requests, args.large, body),
                ),
            ]
            contrast_n = max(1, args.large // 4)
            if contrast_n and not args.no_contrast:
                phases.append(
                    (
                        f"contrast: {contrast_n} authenticated big batches",
                        authenticated_large(contrast_n, batch_body(args.body_mib * MiB - 1024)),
                    )
                )
            peaks: dict[str, int] = {}
            for name, requests in phases:
                started = time.perf_counter()
                outcomes = await run_all(url, requests, args.concurrency)
                wall = time.perf_counter() - started
                peaks[name] = sampler.phase()
                summary = " ".join(f"{k}:{v}" for k, v in sorted(outcomes.items()))
                print(f"  {name:<46}{summary[:44]:<44} {wall:5.1f}s peak RSS {mib(peaks[name])}")
            base = peaks[phases[0][0]]
            flood = peaks[phases[1][0]]
            print(
                f"  flood peak / baseline peak: {flood / base:.2f}x "
                f"(+{(flood - base) / MiB:.1f} MiB; over idle +{(flood - idle) / MiB:.1f} MiB)"
            )
            if proc.poll() is not None:
                print(f"  the gateway exited ({proc.returncode}); see {log}")
                return 1
        finally:
            sampler.stop()
            proc.terminate()
            proc.wait(timeout=30)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--large", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--body-mib", type=int, default=5)
    p.add_argument("--idle-s", type=float, default=2.0)
    p.add_argument("--no-contrast", action="store_true")
    args = p.parse_args(argv)
    if not 0 <= args.large <= args.requests <= 100_000 or not 0 < args.concurrency <= 512:
        p.error("need 0 <= --large <= --requests <= 100000 and --concurrency in 1..512")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
