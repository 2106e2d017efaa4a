"""Several gateway workers, one set of counters: prometheus_client's multiprocess mode.

A real `lineage-hub gateway --workers 2` on a free loopback port. Requests go on fresh
connections, so the kernel hands them to both workers; every scrape, whichever worker
answers it, must show the total.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.serve import free_port
from tests.helpers import wait_until
from tests.promparse import value

REQUESTS = "lineagehub_gateway_http_requests_total"
ROUTE = {"method": "GET", "route": "unmatched", "status": "404"}
SCRAPE = {"method": "GET", "route": "/metrics", "status": "200"}
STALE = 1000
ROUNDS = 40
PER_ROUND = 16


def _env(metrics_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA", "CLICKHOUSE", "CHDB", "MARQUEZ", "LINEAGEHUB_"))
        and k not in {"KUBECONFIG", "KUBERNETES_SERVICE_HOST"}
    }
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return env


def _leave_a_previous_starts_file(metrics_dir: Path) -> None:
    """A process of an earlier start counted STALE requests into the directory."""
    code = (
        "from gateway.promtext import GatewayMetrics\n"
        f"GatewayMetrics().requests.labels(*{tuple(ROUTE.values())!r}).inc({STALE})\n"
    )
    subprocess.run([sys.executable, "-c", code], env=_env(metrics_dir), check=True)
    assert list(metrics_dir.glob("counter_*.db"))


def _per_worker(metrics_dir: Path, labels: dict[str, str], scratch: Path) -> dict[str, float]:
    """Each worker's own count, read by rendering its file alone."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for db in metrics_dir.glob("counter_*.db"):
        alone = scratch / db.stem
        alone.mkdir(exist_ok=True)
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(alone))  # type: ignore[no-untyped-call]
        counts[db.stem] = value(generate_latest(registry).decode(), REQUESTS, **labels)
    return counts


def _get(url: str) -> httpx.Response:
    # A connection per request: the kernel picks the accepting worker each time.
    with httpx.Client(timeout=10) as client:
        return client.get(url, headers={"Connection": "close"})


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    _leave_a_previous_starts_file(metrics_dir)
    port = free_port()
    argv = [sys.executable, "-c", "import sys; from lineagehub.cli import main; sys.exit(main())"]
    argv += ["gateway", "--workers", "2", "--port", str(port), "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, env=_env(metrics_dir), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert proc.poll() is None, "the gateway exited during start-up"
            try:
                if _get(f"{url}/metrics").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway did not start within 60 s"
                time.sleep(0.1)
        yield url, metrics_dir
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _counted(
    metrics_dir: Path, labels: dict[str, str], scratch: Path, total: float
) -> dict[str, float]:
    """Each worker's count once they add up to `total`: a worker counts a request just
    after answering it, so a count read as soon as the answer came may lag by one."""
    wait_until(
        lambda: sum(_per_worker(metrics_dir, labels, scratch).values()) >= total,
        timeout=30,
        every=0.05,
    )
    return _per_worker(metrics_dir, labels, scratch)


def test_every_worker_reports_the_sum_of_all_workers(
    gateway: tuple[str, Path], tmp_path: Path
) -> None:
    url, metrics_dir = gateway
    sent = 0
    with ThreadPoolExecutor(PER_ROUND) as pool:
        for _ in range(ROUNDS):
            statuses = list(
                pool.map(lambda _: _get(f"{url}/no-such-page").status_code, range(PER_ROUND))
            )
            assert statuses == [404] * PER_ROUND
            sent += PER_ROUND
            served = _counted(metrics_dir, ROUTE, tmp_path, sent)
            if sum(1 for n in served.values() if n > 0) >= 2:
                break
    assert sum(1 for n in served.values() if n > 0) >= 2, f"one worker served all: {served}"
    # The file of the earlier start was removed at start: only this start's requests count.
    assert sum(served.values()) == sent

    # Scrapes, until both workers have answered some (the start-up's scrapes aside),
    # each showing the sum whichever worker answers it.
    before = _per_worker(metrics_dir, SCRAPE, tmp_path)
    scraped = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(ROUNDS):
            scrapes = list(pool.map(lambda _: _get(f"{url}/metrics"), range(24)))
            assert {r.status_code for r in scrapes} == {200}
            assert [value(r.text, REQUESTS, **ROUTE) for r in scrapes] == [float(sent)] * 24
            scraped += len(scrapes)
            total = sum(before.values()) + scraped
            after = _counted(metrics_dir, SCRAPE, tmp_path, total)
            answered = {db: n - before.get(db, 0.0) for db, n in after.items()}
            if sum(1 for n in answered.values() if n > 0) >= 2:
                break
    assert sum(1 for n in answered.values() if n > 0) >= 2, answered
