"""The gateway's self-tracing cost in one process, without HTTP or a second process.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_gateway_selftrace.py \\
        [--modes off,off-again,none,tenth,all] [--rounds 16] [--turn 2000] [--concurrency 16] \\
        [--served-us US]

One app serves every mode: the real gateway app (`gateway.app.create_app`, its real
Kafka sink on a private topic, acks=all), its request middleware's spans set to each
mode's in turn, each mode's spans going to the provider it would serve with
(`selftrace.tracer_provider`, its exporter and batch thread, spans to a private topic):
off (no spans), none (tracing on, nothing sampled), tenth (the default sampler; no
request carries a `traceparent`, so each is a root decision), all (every request
traced), and off-again, the A/A control (off again: what the rounds' noise alone gives).
A turn ends when the spans it made are exported (`force_flush`), so each turn pays for
its own. The requests, `POST /api/v1/lineage` one event each, are handed to the app's
ASGI interface by `--concurrency` tasks, each awaiting its answer (201, so each event
acknowledged by Kafka), as uvicorn would after parsing the HTTP request.

Why one app in one process: `bench_gateway.py` serves each mode from its own process,
and on a small VM two identical gateway processes differ by a few percent (their heap
layout, where the kernel runs them), as much as the cost measured; apps built side by
side in one process each have their own producer, objects and memory. Here the modes
share the process, the app, its producer, its heap and its cores: they differ only in
the spans.

Each round runs every mode's turn (`--turn` requests) twice, in the order A B C C B A,
the order drawn each round. A mode's figure in a round is the process's CPU time per
request over its two turns (every thread's: librdkafka's and the span batcher's too),
and the last lines give, for each mode against off, the median of the rounds' paired
ratios with its bootstrap interval (`bench.paired`), and the difference in
microseconds a request, with its interval. The ratio is of the in-process cost (no
HTTP parsing): the served gateway's per-event cost, which `bench_gateway.py` prints,
is larger, so the microseconds are the figure to carry over to it: `--served-us` takes
that cost (measured in the same sitting) and prints each mode's extra as a share of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from bench.bench_gateway import AUTH, LINEAGE, TOKEN, TRACING, encoded, events
from bench.paired import bootstrap_median, paired, per_event_us
from consumers.testkit import create_topics, unique
from gateway import gc_tuning
from gateway.app import SERVICE_NAME, create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.ingest_route import IngestDispatch
from gateway.observed import ObservedRequests
from gateway.tracing import RequestSpans
from lineagehub import selftrace

MODES = ("off", "off-again", "none", "tenth", "all")


def scope_of(body: bytes) -> dict[str, Any]:
    """The ASGI scope uvicorn would hand the app for the POST of `body`."""
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", AUTH["Authorization"].encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": LINEAGE,
        "raw_path": LINEAGE.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def post(app: FastAPI, body: bytes) -> int:
    """One request through the app's ASGI interface; its status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect while the answer is awaited
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope_of(body), receive, send)  # type: ignore[arg-type]
    return status


@dataclass
class Mode:
    """A tracing mode: the request spans the app's middleware makes with it (None:
    tracing off) and the provider they go to, with its exporter and batch thread."""

    spans: RequestSpans | None
    provider: TracerProvider | None

    @classmethod
    def named(cls, name: str, bootstrap: str, spans_topic: str) -> Mode:
        environ = {**TRACING[name], selftrace.TOPIC_ENV: spans_topic}
        provider = selftrace.tracer_provider(SERVICE_NAME, bootstrap, environ)
        return cls(None if provider is None else RequestSpans(provider), provider)


async def turn(
    app: FastAPI, observed: ObservedRequests, mode: Mode, bodies: Sequence[bytes], concurrency: int
) -> float:
    """Every body POSTed under `mode`, `concurrency` at a time, then the spans they made
    exported; the process's CPU seconds it took. (Without the flush a turn's spans would
    be exported up to a batch delay later, in another mode's turn.)"""
    observed.spans = mode.spans
    queue = list(reversed(bodies))
    failed: list[int] = []

    async def worker() -> None:
        while queue:
            status = await post(app, queue.pop())
            if status != 201:
                failed.append(status)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if mode.provider is not None:
        mode.provider.force_flush()
    cpu = time.process_time() - started
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, first with {failed[0]}")
    return cpu


@asynccontextmanager
async def served(bootstrap: str, topic: str) -> AsyncIterator[tuple[FastAPI, ObservedRequests]]:
    """The app, started (its lifespan: the Kafka sink) and stopped after, with its
    request middleware, whose spans each mode sets."""
    settings = Settings(
        tokens=parse_tokens(f"{TOKEN}:lineage:write"),
        kafka_bootstrap=bootstrap,
        lineage_topic=topic,
        rate_per_s=0,
    )
    app = create_app(settings, runs=None, metrics_store=None, tracer_provider=None)
    async with app.router.lifespan_context(app):
        if await post(app, encoded(events(1))[0]) != 201:  # builds the middleware stack
            raise RuntimeError("the gateway refused the first event")
        layer = app.middleware_stack
        while not isinstance(layer, ObservedRequests):  # the lean stack's, POSTs' own
            layer = layer.lean if isinstance(layer, IngestDispatch) else layer.app  # type: ignore[union-attr]
        yield app, layer


async def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--turn", type=int, default=2000, help="requests a turn")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=19)
    p.add_argument(
        "--served-us",
        type=float,
        default=0.0,
        help="the served gateway's CPU a single event (bench_gateway.py, tracing off, the "
        "same sitting): each mode's extra microseconds also as a share of it",
    )
    args = p.parse_args(argv)
    if "off" not in args.modes or not set(args.modes) <= set(MODES):
        p.error(f"--modes takes off and any of {','.join(MODES)}")
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    topic, spans = unique("bench-selftrace"), unique("bench-selftrace-spans")
    await create_topics(bootstrap, [topic, spans])
    bodies = encoded(events(args.turn))
    rng = random.Random(args.seed)
    modes = {m: Mode.named(m, bootstrap, spans) for m in args.modes}
    try:
        async with served(bootstrap, topic) as (app, observed):
            gc_tuning.tune_for_serving()  # as a served gateway, once the app is built
            for mode in modes.values():  # warm: first requests import and connect
                await turn(app, observed, mode, bodies[:200], args.concurrency)
            figures: dict[str, list[float]] = {m: [] for m in args.modes}
            for _ in range(args.rounds):
                order = rng.sample(list(args.modes), len(args.modes))
                cpu = dict.fromkeys(args.modes, 0.0)
                for name in [*order, *reversed(order)]:
                    cpu[name] += await turn(app, observed, modes[name], bodies, args.concurrency)
                for name, seconds in cpu.items():
                    figures[name].append(seconds)
    finally:
        for mode in modes.values():
            if mode.provider is not None:
                mode.provider.shutdown()
    requests = 2 * args.turn
    print(
        f"gateway self-tracing in one process: {args.rounds} rounds of {requests} requests a "
        f"mode, concurrency {args.concurrency}, POST {LINEAGE} one event each, acks=all"
    )
    base = figures["off"]
    print(f"  off              {per_event_us(base, requests):7.1f} us CPU a request (median round)")
    for mode in args.modes:
        if mode == "off":
            continue
        ours = figures[mode]
        extra = [(m - b) / requests * 1e6 for m, b in zip(ours, base, strict=True)]
        diff, low, high = bootstrap_median(extra)
        print(
            f"  {mode:<16} {per_event_us(ours, requests):7.1f} us CPU a request; vs off: "
            f"{paired(ours, base).text()}; {diff:+.1f} us a request [95% CI {low:+.1f} .. "
            f"{high:+.1f}] (median paired)"
        )
        if args.served_us:
            us = args.served_us
            print(
                f"  {'':<16} of a served request's {us:.0f} us: {diff / us:+.1%} "
                f"[95% CI {low / us:+.1%} .. {high / us:+.1%}]"
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
