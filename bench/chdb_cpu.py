"""CPU of a process that stores into embedded ClickHouse (chdb), split as the
Collector's published per-core figures count it: ClickHouse's part (its threads, and its
work inside our calls into chdb) and ours (everything else). See `COLLECTOR_NOTE`."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from consumers.otel.backend import ChdbBackend


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of this process so far: all of it, its own threads' (those that keep
    the process's name: Python's, and the Arrow and Rust pools our decoding runs on;
    and librdkafka's `rdk:` threads, where the consumers' Kafka client fetches,
    decompresses and checks records; ClickHouse names each of its threads), and
    ClickHouse's work inside our threads' calls into chdb (an insert's query runs partly
    in the thread that calls it)."""

    process: float
    threads: float
    in_chdb: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.process - other.process,
            self.threads - other.threads,
            self.in_chdb - other.in_chdb,
        )

    @property
    def clickhouse(self) -> float:
        """ClickHouse's CPU: its threads (insert pipelines, background merges; those that
        ended meanwhile too) and its work inside our calls."""
        return self.process - self.threads + self.in_chdb

    @property
    def ours(self) -> float:
        """Everything else: Kafka, checks, decoding, the Arrow stream written for chdb."""
        return self.threads - self.in_chdb


class MeteredChdb(ChdbBackend):
    """chdb, counting the CPU each call takes in its calling thread (`in_chdb`)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.in_chdb = 0.0
        self._meter = threading.Lock()

    def _run(self, sql: str, fmt: str = "CSV") -> str:
        started = time.thread_time()
        try:
            return super()._run(sql, fmt)
        finally:
            used = time.thread_time() - started
            with self._meter:
                self.in_chdb += used


#: Names of threads counted as ours beside those keeping the process's name: librdkafka's,
#: where the consumers' Kafka client (and the self-trace span exporter) does its work.
KAFKA_THREADS = ("rdk:",)


def own_threads_cpu() -> float:
    """CPU seconds of the live threads that keep the process's name (ours: they live as
    long as the process or its event loop, so none ends inside a measured run), and of
    librdkafka's (`KAFKA_THREADS`); each by its own clock (nanoseconds, where /proc's
    counts are 10 ms ticks)."""
    own = Path("/proc/self/comm").read_text().strip()
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            if name == own or name.startswith(KAFKA_THREADS):
                total += time.clock_gettime(thread_clock(int(task.name)))
        except OSError:  # the thread ended meanwhile
            continue
    return total


def thread_clock(tid: int) -> int:
    """The CPU-time clock of the thread `tid` of this process (Linux's per-thread clock
    id, for threads Python did not start, which `pthread_getcpuclockid` cannot name)."""
    return (~tid << 3) | 6


def cpu_now(backend: MeteredChdb) -> Cpu:
    return Cpu(time.process_time(), own_threads_cpu(), backend.in_chdb)


async def merges_settled(backend: ChdbBackend) -> None:
    """Wait until no merge runs (twice in a row, 50 ms apart), so the background merges an
    insert run starts count to that run, not to the next."""
    quiet = 0
    while quiet < 2:
        (row,) = await backend.query("SELECT count() AS n FROM system.merges")
        quiet = quiet + 1 if int(row["n"]) == 0 else 0
        await asyncio.sleep(0.05)


def print_cpu(what: str, total: int, direct: Cpu, consumer: Cpu) -> None:
    """CPU per row of the direct insert (the baseline) and of the consumer, split into
    ClickHouse's and ours (see `COLLECTOR_NOTE`), with the ratios."""

    def us(seconds: float) -> float:
        return seconds / total * 1e6

    print("  CPU per row (us), from the first insert until merges settle:")
    print(
        "                                 whole  ClickHouse     our threads    ours"
        "  ours: rows/CPU-s"
    )
    rows = (("direct insert (baseline)", direct), ("Kafka -> chdb (consumer)", consumer))
    for label, cpu in rows:
        print(
            f"    {label:<24} {us(cpu.process):>7.1f} {us(cpu.clickhouse):>10.1f} "
            f"{us(cpu.threads):>15.1f} {us(cpu.ours):>7.1f} {total / cpu.ours:>17,.0f}"
        )
    print(
        f"    whole process per CPU-second: consumer {total / consumer.process:,.0f} vs direct "
        f"{total / direct.process:,.0f} {what}/s, ratio {direct.process / consumer.process:.2f}"
    )
    print(
        f"    the consumer beyond the direct insert: ours {us(consumer.ours - direct.ours):+.1f} "
        f"us a row (Kafka, check, decode, digest, commits), ClickHouse's "
        f"{us(consumer.clickhouse - direct.clickhouse):+.1f}"
    )
    print(
        f"    compares with the Collector's per-core figures: ours, "
        f"{total / consumer.ours:,.0f} {what} per CPU-second (see the note at the end)"
    )


COLLECTOR_NOTE = """\
Which figure compares with the Collector's: "ours". The published 137k spans/s per core
(clickhouse.com, "From OTel to Rotel") is 1.1M spans/s over the Collector's 8-core host,
ClickHouse on a separate i3.4xlarge; the exporter README's ~40k log rows/s per core is per
collector core, its ClickHouse sized apart (32 cores). Both count the exporter's process
alone: receiving, decoding, batching and encoding rows for the native protocol, not the
server reading the blocks, writing parts or merging them. "ours" is that cut: the whole
process less ClickHouse's threads and ClickHouse's work inside our insert calls (what a
server does when the consumer runs with --clickhouse-backend=native); the Arrow stream
written for chdb stays in "ours", as the Collector's native encoding counts in its CPU."""
