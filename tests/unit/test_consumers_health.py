from __future__ import annotations

import asyncio
import json

from consumers.health import Health, HealthServer
from consumers.stats import Stats
from tests.promparse import value


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def test_healthz_and_metrics() -> None:
    stats = Stats("test")
    health = Health()
    server = HealthServer(stats, health)
    port = await server.start()
    try:
        status, _, body = await get(port, "/healthz")
        assert status == 503 and json.loads(body)["status"] == "down"
        health.started = True
        stats.set_lag("otel-spans", 0, 7)
        stats.inc("processed", 3, topic="otel-spans")
        stats.inc("dead_lettered", topic="otel-spans", reason="decode")
        status, _, body = await get(port, "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok", "lag": 7}
        health.degraded_reason = "marquez unavailable"
        status, _, body = await get(port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "degraded"
        status, headers, body = await get(port, "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        processed = "lineagehub_consumer_processed_total"
        assert value(body, processed, consumer="test", topic="otel-spans") == 3
        dead = "lineagehub_consumer_dead_lettered_total"
        assert value(body, dead, consumer="test", reason="decode", topic="otel-spans") == 1
        lag = "lineagehub_consumer_lag"
        assert value(body, lag, consumer="test", partition="0", topic="otel-spans") == 7
        assert "# TYPE lineagehub_consumer_retried_total counter" in body
        assert (await get(port, "/nope"))[0] == 404
        assert (await get(port, "/metrics", method="POST"))[0] == 405
    finally:
        await server.stop()


def test_stats_sum_over_labels() -> None:
    stats = Stats("t")
    stats.inc("inserted_rows", 10, table="a")
    stats.inc("inserted_rows", 5, table="b")
    assert stats.get("inserted_rows") == 15
    assert stats.get("inserted_rows", table="b") == 5
    stats.set_lag("x", 1, -3)
    assert stats.total_lag() == 0
