"""Rates of Kafka consumers measured the same way in every bench.

* `bare_consume`: the floor any consumer of a topic pays: a plain aiokafka consumer
  (no group, no commits) that reads every record and parses it, timed from its first
  record to its last.
* `consume_sustained`: a batch consumer (`OtelConsumer`) from start to its last
  commit, and its sustained rate: messages committed after its first commit over the
  time since that commit, so the group join and the first fetch do not count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from consumers.otel.consumer import OtelConsumer
from consumers.testkit import wait_drained


async def bare_consume(
    bootstrap: str, topic: str, total: int, parse: Callable[[bytes | None], object]
) -> float:
    """Records per second: read and `parse` `total` records of `topic`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batches and not started:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    parse(record.value)
                    seen += 1
    finally:
        await consumer.stop()
    return total / (time.perf_counter() - started)


@dataclass
class Run:
    wall_s: float  # start to drained, group join included
    sustained: float  # messages/s after the first commit
    batches: float


async def consume_sustained(
    consumer: OtelConsumer, bootstrap: str, group: str, topics: Sequence[str], total: int
) -> Run:
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run(stop))
    first_at, first_done = 0.0, 0.0
    deadline = started + 1800
    # In-process: the commit count the consumer keeps ("processed" counts a batch's
    # messages once its offsets are committed). Every 20 ms: the watch runs on the
    # consumer's event loop, so its CPU counts as the consumer's (at every 2 ms, summing
    # the counters and the wake-ups were ~2% of the otel consumer's thread in a
    # profile); 20 ms moves a sustained rate's window by at most 0.4% over a 10 s run.
    while (done := consumer.stats.get("processed")) < total:
        if task.done() or time.perf_counter() > deadline:
            raise RuntimeError(f"consumer stopped or stalled at {done} of {total} messages")
        if done and not first_at:
            first_at, first_done = time.perf_counter(), done
        await asyncio.sleep(0.02)
    ended = time.perf_counter()
    await wait_drained(bootstrap, group, list(topics), within=60)  # Kafka agrees
    stop.set()
    await asyncio.wait_for(task, 60)
    rest = total - first_done
    sustained = rest / (ended - first_at) if first_at and rest > 0 else float("nan")
    return Run(ended - started, sustained, consumer.stats.get("batches"))
