"""Would a librdkafka producer (confluent-kafka) make the gateway cheaper than aiokafka?

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_gateway_producers.py \\
        [--events 20000] [--concurrency 16] [--batch 50]

Bare producers only, no HTTP, in one run on one private topic, each with the gateway's
settings (acks=all, idempotent, linger 5 ms): `concurrency` senders, each appending one
record (or `--batch` records) and awaiting the acknowledgements before the next, as the
gateway's requests do. Printed per producer and mode: records/s, p50/p99 of a send,
and this process's CPU per record (librdkafka's own threads included), then the ratio
of confluent-kafka to aiokafka (the stage's producer already uses confluent-kafka).

The confluent-kafka side is driven the way an asyncio server would drive it:
`produce()` on the event loop, one thread polling for delivery reports and handing
each poll's reports to the loop in one call (a wake-up per record costs a syscall).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.testkit import create_topics, end_offsets, unique
from lineagehub.telemetry.publisher import KafkaPublisher

Enqueue = Callable[[str, bytes, bytes], Awaitable["asyncio.Future[Any]"]]


class RdkafkaProducer:
    """confluent-kafka's Producer with delivery reports resolved on the event loop."""

    def __init__(self, bootstrap: str, linger_ms: int = 5) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": linger_ms,
                "client.id": "bench-gateway-rdkafka",
            }
        )
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._reports: list[tuple[asyncio.Future[Any], Any]] = []
        self._poller = threading.Thread(target=self._poll, name="rdkafka-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)
            if self._reports:
                reports, self._reports = self._reports, []
                self._loop.call_soon_threadsafe(_settle, reports)

    async def enqueue(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()

        def delivered(error: Any, _message: Any) -> None:  # on the poll thread
            self._reports.append((future, error))

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
                return future
            except BufferError:  # the local queue is full: let deliveries drain it
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        await asyncio.to_thread(self._producer.flush, 30)
        self._stop.set()
        await asyncio.to_thread(self._poller.join)


def _settle(reports: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, error in reports:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(RuntimeError(str(error)))


async def closed_loop(
    enqueue: Enqueue, topic: str, records: Sequence[tuple[bytes, bytes]], per_send: int, tasks: int
) -> tuple[float, float, list[float]]:
    """(wall s, CPU s of this process, latency of each send)."""
    queue = [records[i : i + per_send] for i in range(0, len(records), per_send)][::-1]
    latencies: list[float] = []

    async def sender() -> None:
        while queue:
            group = queue.pop()
            started = time.perf_counter()
            acks = [await enqueue(topic, key, value) for key, value in group]
            await asyncio.gather(*acks)
            latencies.append(time.perf_counter() - started)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(tasks)))
    return time.perf_counter() - t0, time.process_time() - cpu0, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def records_for(n: int) -> list[tuple[bytes, bytes]]:
    import orjson

    from bench.bench_gateway import events

    return [(str(e["run"]["runId"]).encode(), orjson.dumps(e)) for e in events(n)]


async def main_async(args: argparse.Namespace) -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    topic = unique("bench-producers")
    await create_topics(bootstrap, [topic])
    records = records_for(args.events)
    print(
        f"{len(records)} records of {sum(len(v) for _, v in records) / len(records):.0f} bytes, "
        f"concurrency {args.concurrency}, acks=all, idempotent, linger 5 ms; load "
        f"{os.getloadavg()[0]:.1f}"
    )
    aiokafka = KafkaPublisher(bootstrap, "bench-aiokafka", linger_ms=5, max_batch_size=256 * 1024)
    await aiokafka.start()

    async def aiokafka_enqueue(topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        return await aiokafka.enqueue(topic, key.decode(), value)

    producers: list[tuple[str, Enqueue, Callable[[], Awaitable[None]]]] = [
        ("aiokafka", aiokafka_enqueue, aiokafka.stop)
    ]
    rdkafka = RdkafkaProducer(bootstrap)
    producers.append(("confluent-kafka", rdkafka.enqueue, rdkafka.stop))
    sent = 0
    results: dict[tuple[str, int], float] = {}
    try:
        for per_send in (1, args.batch):
            for _round in range(args.rounds):  # interleaved: load drifts between phases
                for name, enqueue, _stop in producers:
                    wall, cpu, latencies = await closed_loop(
                        enqueue, topic, records, per_send, args.concurrency
                    )
                    sent += len(records)
                    rate = len(records) / wall
                    results[(name, per_send)] = max(results.get((name, per_send), 0.0), rate)
                    print(
                        f"  {name:<16} {per_send:>3} a send  {rate:>9,.0f} records/s   "
                        f"p50 {pct(latencies, 0.5):6.2f} ms  p99 {pct(latencies, 0.99):6.2f} ms  "
                        f"cpu/record {cpu / len(records) * 1e6:5.1f} us"
                    )
    finally:
        for _name, _enqueue, stop in producers:
            await stop()
    for per_send in (1, args.batch):
        base = results[("aiokafka", per_send)]
        other = results[("confluent-kafka", per_send)]
        print(
            f"best of {args.rounds}, {per_send} a send: confluent-kafka {other:,.0f}/s vs "
            f"aiokafka {base:,.0f}/s: {other / base:.2f}x"
        )
    stored = sum((await end_offsets(bootstrap, [topic])).values())
    print(f"records on the topic: {stored} of {sent} sent")
    return 0 if stored == sent else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
