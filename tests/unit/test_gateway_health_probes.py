"""/api/v1/health does not reach the stores on each call.

The stores are loopback servers started here that count what reaches them: an HTTP
server answering Marquez's `GET /api/v1/namespaces`, and a TCP listener where the
Kafka probe connects. The gateway is the real app under uvicorn. Proof is by the
counts of probes that actually arrived, never by timing.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import Iterator

import httpx
import pytest

from gateway import health
from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.health_cache import HealthCache
from gateway.serve import ServerThread
from tests.helpers import wait_until
from tests.loopback_http import QuietHandler, serving
from tests.promparse import value

TOKEN = "health-probe-token-000001"


class Counting:
    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.n += 1


@pytest.fixture
def marquez() -> Iterator[tuple[str, Counting]]:
    seen = Counting()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/api/v1/namespaces"):
                seen.add()
            body = b'{"namespaces": []}'
            self.reply(200, body, {"Content-Type": "application/json"})

    with serving(Handler) as served:
        yield served.url, seen


@pytest.fixture
def kafka_port() -> Iterator[tuple[str, Counting]]:
    """A listener where the Kafka probe's TCP connect lands (it only connects)."""
    seen = Counting()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            seen.add()

    with serving(Handler, server=socketserver.ThreadingTCPServer) as served:
        yield f"127.0.0.1:{served.port}", seen


def _settings(marquez_url: str, bootstrap: str, interval: float) -> Settings:
    return Settings(
        tokens=parse_tokens(f"{TOKEN}:runs:read"),
        kafka_bootstrap=bootstrap,
        marquez_url=marquez_url,
        required=frozenset({"kafka"}),
        health_interval_s=interval,
        rate_per_s=0,
    )


def test_many_callers_one_probe_run_and_only_token_holders_see_detail(
    marquez: tuple[str, Counting], kafka_port: tuple[str, Counting]
) -> None:
    url, marquez_seen = marquez
    bootstrap, kafka_seen = kafka_port
    app = create_app(
        _settings(url, bootstrap, interval=3600), publisher=None, runs=None, metrics_store=None
    )

    async def flood(base: str) -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            anonymous = [client.get("/api/v1/health") for _ in range(60)]
            authed = [
                client.get("/api/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
                for _ in range(20)
            ]
            responses = await asyncio.gather(*anonymous, *authed)
        return list(responses[:60]), list(responses[60:])

    with ServerThread(app) as server:
        anonymous, authed = asyncio.run(flood(server.url))
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    # The Kafka probe only connects: the kernel completes its connection before the
    # listener's thread accepts and counts it. One probe run (the metric) is one connect.
    assert value(metrics, "lineagehub_gateway_health_probe_runs_total") == 1
    wait_until(lambda: kafka_seen.n >= 1, timeout=30, every=0.01)
    assert (marquez_seen.n, kafka_seen.n) == (1, 1)
    for r in anonymous:
        assert r.status_code == 200
        assert set(r.json()) == {"status", "ageSeconds"}, r.json()
        assert r.json()["status"] == "ok"
    for r in authed:
        deps = r.json()["dependencies"]
        assert deps["marquez"]["status"] == "ok" and deps["kafka"]["status"] == "ok"
        assert deps["kubernetes"]["status"] == "disabled"


def test_a_wrong_token_sees_no_detail(
    marquez: tuple[str, Counting], kafka_port: tuple[str, Counting]
) -> None:
    app = create_app(
        _settings(marquez[0], kafka_port[0], interval=3600),
        publisher=None,
        runs=None,
        metrics_store=None,
    )
    with ServerThread(app) as server:
        wrong = httpx.get(
            f"{server.url}/api/v1/health",
            headers={"Authorization": "Bearer not-a-token-of-this-gateway"},
            timeout=10,
        )
    assert wrong.status_code == 200 and "dependencies" not in wrong.json()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_probes_run_again_once_the_interval_has_passed(
    marquez: tuple[str, Counting],
) -> None:
    url, seen = marquez
    clock = Clock()

    async def probe() -> list[health.Check]:
        async def marquez_probe() -> str:
            return await health.marquez_probe(url, 5)

        return [await health.run_check("marquez", marquez_probe, True, 5)]

    cache = HealthCache(probe, interval_s=5.0, clock=clock)

    async def scenario() -> list[tuple[int, float]]:
        out = []
        _, age = await cache.get()
        out.append((seen.n, age))
        clock.now += 4.5
        _, age = await cache.get()
        out.append((seen.n, age))
        clock.now += 0.5  # the interval has passed: one new run
        _, age = await cache.get()
        out.append((seen.n, age))
        return out

    assert asyncio.run(scenario()) == [(1, 0.0), (1, 4.5), (2, 0.0)]
    assert cache.runs == 2


def test_callers_during_a_run_share_it_and_one_leaving_does_not_cancel_it() -> None:
    calls = 0

    async def scenario() -> tuple[int, list[str], bool]:
        nonlocal calls
        release = asyncio.Event()
        started = asyncio.Event()

        async def probe() -> list[health.Check]:
            nonlocal calls
            calls += 1
            started.set()
            await release.wait()
            return [health.Check("kafka", "ok", 1.0, "reachable", True)]

        cache = HealthCache(probe, interval_s=60.0)
        waiters = [asyncio.ensure_future(cache.get()) for _ in range(30)]
        # The run's task was scheduled after every waiter: once it runs, all are parked.
        await started.wait()
        waiters[0].cancel()
        release.set()
        results = await asyncio.gather(*waiters[1:])
        return calls, [checks[0].status for checks, _ in results], waiters[0].cancelled()

    probes, statuses, cancelled = asyncio.run(scenario())
    assert probes == 1
    assert statuses == ["ok"] * 29
    assert cancelled


def test_a_failed_probe_is_cached_as_down_too() -> None:
    """A store that is down must not be re-probed by every caller either."""
    port = _closed_port()
    clock = Clock()
    attempts = 0

    async def probe() -> list[health.Check]:
        nonlocal attempts
        attempts += 1

        async def kafka() -> str:
            return await health.tcp_probe(f"127.0.0.1:{port}")

        return [await health.run_check("kafka", kafka, True, 5)]

    cache = HealthCache(probe, interval_s=5.0, clock=clock)

    async def scenario() -> list[str]:
        return [(await cache.get())[0][0].status for _ in range(10)]

    assert asyncio.run(scenario()) == ["down"] * 10
    assert attempts == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
