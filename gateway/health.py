"""Dependency checks for /api/v1/health: each with a status, latency and detail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | down | disabled
    latency_ms: float | None
    detail: str
    required: bool

    def wire(self) -> dict[str, object]:
        return {
            "status": self.status,
            "latencyMs": self.latency_ms,
            "required": self.required,
            "detail": self.detail,
        }


async def run_check(
    name: str,
    probe: Callable[[], Awaitable[str]] | None,
    required: bool,
    timeout_s: float,
    disabled_reason: str = "not configured",
) -> Check:
    """`probe` returns a short detail on success and raises on failure."""
    if probe is None:
        # A required dependency that is not configured is as good as down.
        return Check(name, "down" if required else "disabled", None, disabled_reason, required)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            detail = await probe()
        status = "ok"
    except TimeoutError:
        detail, status = f"no answer within {timeout_s}s", "down"
    except Exception as exc:
        detail, status = f"{type(exc).__name__}: {exc}"[:500], "down"
    latency = round((time.perf_counter() - started) * 1000, 3)
    return Check(name, status, latency, detail, required)


def split_hostports(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


async def tcp_probe(bootstrap: str) -> str:
    """Kafka: can a TCP connection reach a bootstrap broker?"""
    errors = []
    for host, port in split_hostports(bootstrap):
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            errors.append(f"{host}:{port}: {exc.strerror or exc}")
            continue
        writer.close()
        await writer.wait_closed()
        return f"{host}:{port} reachable"
    raise ConnectionError("; ".join(errors) or f"no broker address in {bootstrap!r}")


async def marquez_probe(url: str, timeout_s: float) -> str:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.get(f"{url.rstrip('/')}/api/v1/namespaces", params={"limit": 1})
    if response.status_code >= 400:
        raise ConnectionError(f"HTTP {response.status_code}")
    return f"HTTP {response.status_code}"


def overall(checks: list[Check]) -> tuple[int, str]:
    if any(c.required and c.status == "down" for c in checks):
        return 503, "down"
    if any(c.status == "down" for c in checks):
        return 200, "degraded"
    return 200, "ok"
