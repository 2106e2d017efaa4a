"""The lineage consumer loop: Kafka `openlineage-events` -> validate -> Marquez, or the DLQ.

RunEvents, DatasetEvents and JobEvents are all forwarded: Marquez (0.43+) stores the
three at `POST /api/v1/lineage`, telling them apart by `schemaURL`.

Ordering and concurrency: each partition has `lanes` workers sharing one queue of
ready records. A record's ordering key is its Kafka key (the producer's ordering key,
the run id), or, when it has no key, the event's own key (its run id, or
`dataset:<ns>/<name>` / `job:<ns>/<name>` for static events). A record is ready only
when no earlier record of its key is queued or in flight; until then it waits behind
that one (`_Partition.behind`). Events of one run therefore reach Marquez in offset
order, while different runs POST concurrently and no worker idles while any run has
a ready event (fixed lanes by key hash left workers idle behind busy ones: a slow
Marquez saw ~30% fewer POSTs in flight than `lanes` per partition).

Flow control: a partition pauses when `max_in_flight` of its records are unfinished (queued
or being stored) and resumes, from the worker that finishes the record bringing it to half
that, at once (not at the loop's next fetch, which waits up to 200 ms while every partition
is paused: long enough for a slow Marquez to drain every worker). Records finished behind an
unfinished one do not count (counting every offset past the first unfinished one paused the
partition while one slow event was retried, and every lane idled behind it); they are
bounded apart, by `max_uncommitted`: what a crash would make Marquez take again.

Delivery: at-least-once. An offset is committed only when it and every earlier
offset of its partition were stored in Marquez or dead-lettered (`OffsetTracker`).

Marquez down: a POST that fails transiently is retried with exponential backoff
and jitter. After `breaker_threshold` transient failures in a row (network errors,
timeouts, or 5xx of different events) the gate closes: every assigned partition is
paused (no fetching, no buffering), workers wait on the gate instead of retrying, and
one prober pings Marquez with backoff. A ping only shows that Marquez answers, not that
it can store (its database may be read-only): when it answers, one waiting event is let
through as a test, and only if Marquez stores it does the gate open and the partitions
resume.

Poison: a 5xx is the event's own only when other events were stored between its
failures; then, after `max_server_error_attempts`, it is dead-lettered. A 5xx for every
event is an outage, however long it lasts: nothing is dead-lettered for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from consumers.aio import wait_until
from consumers.dlq import DeadLetterQueue, Record, Rejection
from consumers.gc_tuning import tune_for_consuming
from consumers.health import Health
from consumers.kafka import (
    KAFKA_CHECK_INTERVAL,
    Rebalance,
    ask_cluster,
    make_consumer,
    make_producer,
    stop_consumer,
    update_lag,
    watch_cluster,
)
from consumers.lineage.marquez import MarquezClient, Outcome
from consumers.lineage.validate import ValidEvent, validate
from consumers.offsets import OffsetTracker
from consumers.retry import Backoff
from consumers.stats import Stats
from lineagehub.openlineage_schema import EventKind
from lineagehub.store_spans import SpanRecorder, record_span
from lineagehub.topics import LINEAGE_TOPIC

log = logging.getLogger(__name__)
NAME = "lineage"


@dataclass
class LineageSettings:
    bootstrap: str
    marquez_url: str
    group: str = "lineagehub-lineage"
    topic: str = LINEAGE_TOPIC
    lanes: int = 8
    max_in_flight: int = 256  # unfinished records per partition
    max_uncommitted: int = 4096  # offsets per partition past its first unfinished one
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.2, factor=2.0, cap=15.0))
    breaker_threshold: int = 3
    max_server_error_attempts: int = 8
    commit_interval: float = 1.0
    lag_interval: float = 5.0
    kafka_check_interval: float = KAFKA_CHECK_INTERVAL  # `/healthz` degraded while away
    # In-flight POSTs get this long after SIGTERM, well inside the pod's grace period (see
    # consumers/cli.py), so the final commit and LeaveGroup are never cut by SIGKILL.
    shutdown_timeout: float = 20.0
    revoke_timeout: float = 10.0
    http_timeout: float = 10.0
    max_connections: int = 32
    fetch_max_records: int = 500
    dispatch_slice: int = 16  # records checked and queued between turns of the workers
    tune_gc: bool = True  # consumers.gc_tuning for the process
    client_id: str = "lineagehub-lineage"


def _source(record: Record) -> str:
    """The `/healthz` reason's name for an event that keeps failing."""
    return f"lineage {record.topic}/{record.partition}@{record.offset}"


def _no_type(verdict: ValidEvent) -> str:
    """The `event_type` label of an event without one: its kind for static events."""
    return "none" if verdict.kind is EventKind.RUN else verdict.kind.value


class Gate:
    """Marquez as the workers see it: up (POST away), or down (wait; the prober lets one
    POST through at a time to test whether Marquez stores again)."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.failures = 0
        self._failed: set[str] = set()  # events with a 5xx since the last success
        self._up = asyncio.Event()
        self._up.set()
        self._wake = asyncio.Event()  # the gate opened or a test POST may go
        self._decided = asyncio.Event()  # the test POST's outcome is in
        self._tests = 0  # test POSTs that may go through the closed gate
        self._waiting = 0

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def success(self) -> None:
        """A POST was stored: Marquez stores, whatever the gate thought."""
        if not self.is_up:
            self.open()
        self.failures = 0
        self._failed.clear()

    def failure(self, event: str | None = None) -> bool:
        """Count one transient failure; True when this one closed the gate.

        `event`: the event a 5xx answered. Such a failure counts once per event, so one
        event failing again and again (poison) cannot close the gate on its own; network
        errors and timeouts (no `event`) all count.
        """
        if event is not None:
            if event in self._failed:
                return False
            self._failed.add(event)
        self.failures += 1
        if self.is_up and self.failures >= self.threshold:
            self._up.clear()
            return True
        return False

    def open(self) -> None:
        self.failures = 0
        self._failed.clear()
        self._tests = 0
        self._up.set()
        self._wake.set()
        self._decided.set()

    async def wait_up(self) -> bool:
        """Wait until the gate is up (False), or until this caller may send the POST that
        tests Marquez while the gate is down (True: report its outcome with `tested`)."""
        self._waiting += 1
        try:
            while not self._up.is_set():
                if self._tests:
                    self._tests -= 1
                    return True
                self._wake.clear()
                await self._wake.wait()
            return False
        finally:
            self._waiting -= 1
            if self._tests and not self._waiting:
                self._decided.set()  # nobody is left to test: the prober decides

    def tested(self, stored: bool | None) -> None:
        """The test POST's outcome: stored (open), failed (stay closed), or None (a 4xx,
        or the POST was cancelled: let another waiting event test instead)."""
        if stored:
            self.open()
        elif stored is None and not self._up.is_set() and self._waiting:
            self._tests += 1
            self._wake.set()
        else:
            self._decided.set()

    async def test(self) -> bool:
        """Marquez answers its probe: let one waiting POST through and wait for its outcome.
        True when the gate is up (also when no event waits to test it)."""
        if self._up.is_set():
            return True
        if not self._waiting:
            self.open()
            return True
        self._decided.clear()
        self._tests = 1
        self._wake.set()
        await self._decided.wait()
        self._tests = 0
        return self._up.is_set()


_Item = tuple[Record, ValidEvent | Rejection, bytes]  # a record, its verdict, its key


@dataclass
class _Partition:
    tp: TopicPartition
    ready: asyncio.Queue[_Item] = field(default_factory=asyncio.Queue)
    # Per key with a record queued or in flight: the records of that key behind it, in
    # offset order. A key is absent when none of its records is unfinished.
    behind: dict[bytes, deque[_Item]] = field(default_factory=dict)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    last_offset: int = -1
    revoked: bool = False  # being revoked: start none of its records any more
    unfinished: int = 0  # records queued or being stored

    def add(self, item: _Item) -> None:
        """Queue a record: ready, or behind the unfinished record of its key."""
        waiting = self.behind.get(item[2])
        if waiting is None:
            self.behind[item[2]] = deque()
            self.ready.put_nowait(item)
        else:
            waiting.append(item)

    def finished(self, key: bytes) -> None:
        """The record of `key` in flight is done: the next one of that key is ready."""
        waiting = self.behind[key]
        if waiting:
            self.ready.put_nowait(waiting.popleft())
        else:
            del self.behind[key]


class LineageConsumer:
    def __init__(
        self,
        settings: LineageSettings,
        stats: Stats | None = None,
        health: Health | None = None,
        marquez: MarquezClient | None = None,
        tracer: SpanRecorder | None = None,
    ) -> None:
        self.s = settings
        self.tracer = tracer  # our own spans (lineagehub.store_spans); None: untraced
        self.stats = stats or Stats(NAME)
        self.health = health or Health()
        self.marquez = marquez or MarquezClient(
            settings.marquez_url,
            timeout=settings.http_timeout,
            max_connections=settings.max_connections,
        )
        self.gate = Gate(settings.breaker_threshold)
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._parts: dict[TopicPartition, _Partition] = {}
        self._paused: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._dlq: DeadLetterQueue | None = None
        self._prober: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self._stored = 0  # events Marquez stored: the evidence that a 5xx is an event's own

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then finish in-flight work, commit, leave the group."""
        if self.s.tune_gc:
            tune_for_consuming()
        self._producer = make_producer(self.s.bootstrap, f"{self.s.client_id}-dlq")
        self._consumer = make_consumer(
            self.s.bootstrap,
            self.s.group,
            [],
            self.s.client_id,
            max_poll_records=self.s.fetch_max_records,
        )
        self._dlq = DeadLetterQueue(self._producer, NAME)
        await self._producer.start()
        await self._consumer.start()
        self._consumer.subscribe([self.s.topic], listener=Rebalance(self._revoked, self._assigned))
        self._watch = asyncio.create_task(
            watch_cluster(
                partial(ask_cluster, self._consumer), self.health, NAME, self.s.kafka_check_interval
            ),
            name="lineage-kafka-watch",
        )
        self.health.started = True
        log.info("lineage consumer started", extra={"topic": self.s.topic, "group": self.s.group})
        try:
            await self._loop(stop)
        finally:
            await self._shutdown()

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        next_commit = next_lag = 0.0
        while not stop.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=200, max_records=self.s.fetch_max_records
            )
            await self._dispatch(batches, stop)
            self._flow_control()
            now = time.monotonic()
            if now >= next_commit:
                await self._commit()
                next_commit = now + self.s.commit_interval
            if now >= next_lag:
                await update_lag(self._consumer, self.stats, self.tracker.last_committed)
                next_lag = now + self.s.lag_interval

    async def _shutdown(self) -> None:
        self._stopping = True
        self.health.stopping = True
        consumer = self._consumer
        if consumer is not None and consumer.assignment():
            consumer.pause(*consumer.assignment())
        await wait_until(lambda: not self.tracker.total_in_flight(), self.s.shutdown_timeout)
        if self.tracker.total_in_flight():
            log.warning(
                "shutdown timeout: unfinished events will be redelivered",
                extra={"in_flight": self.tracker.total_in_flight()},
            )
        await self._commit()
        for part in list(self._parts.values()):
            await self._stop_workers(part)
        for task in (self._prober, self._watch):
            if task is not None:
                task.cancel()
        if consumer is not None:
            await stop_consumer(consumer)  # sends LeaveGroup: the partitions move on at once
        if self._producer is not None:
            await self._producer.stop()
        await self.marquez.aclose()
        log.info("lineage consumer stopped")

    # ---- dispatch ----------------------------------------------------------------------

    def _partition(self, tp: TopicPartition) -> _Partition:
        part = self._parts.get(tp)
        if part is None:
            part = _Partition(tp)
            part.workers = [
                asyncio.create_task(self._worker(part), name=f"lineage-{tp.partition}-{i}")
                for i in range(self.s.lanes)
            ]
            self._parts[tp] = part
        return part

    async def _dispatch(
        self, batches: Mapping[TopicPartition, Sequence[Record]], stop: asyncio.Event | None = None
    ) -> None:
        """Check and queue a fetch, a partition after another in offset order, a slice at a time.

        Between slices the workers run: checking a fetch of a few hundred records in one go
        held the event loop ~15 ms, while every answered POST waited to be read and its lane
        to be given the next record (a store answering in 5 ms saw 10 of 16 lanes busy).

        A revocation may begin between slices. aiokafka returns no records while a rebalance
        is under way, so the fetch is of the current assignment; the parts of all its
        partitions are taken before the first slice, so a revocation marks every one of them,
        first seen in this fetch or not, and the dispatch starts no record of a marked part,
        also after the revocation forgot it. What is not started is not committed (the commit
        covers a finished prefix of started offsets), and every assignment after a revocation
        reads from the commit: by the new owner, or by this consumer again."""
        parts = [(self._partition(tp), records) for tp, records in batches.items()]
        size = self.s.dispatch_slice
        first = True
        for part, records in parts:
            for start in range(0, len(records), size):
                if not first:
                    await asyncio.sleep(0)
                first = False
                if part.revoked or (stop is not None and stop.is_set()):
                    break  # the rest is not started, so not committed: read again later
                self._queue(part, records[start : start + size])

    def _queue(self, part: _Partition, records: Sequence[Record]) -> None:
        started = self.tracker.started
        for record in records:
            if record.offset <= part.last_offset:
                continue  # refetched after a reset; already queued
            part.last_offset = record.offset
            verdict = validate(record.value)
            if record.key:
                key = record.key
            elif isinstance(verdict, ValidEvent):
                key = verdict.key.encode("utf-8", "surrogatepass")
            else:
                key = str(record.offset).encode()
            started(part.tp, record.offset)
            part.unfinished += 1
            part.add((record, verdict, key))

    async def _worker(self, part: _Partition) -> None:
        while True:
            record, verdict, key = await part.ready.get()
            attempt = 0
            while True:
                try:
                    await self._handle(record, verdict)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A bug or an unforeseen error: never skip the event, retry it in place.
                    attempt += 1
                    log.exception("unexpected error", extra={"offset": record.offset})
                    await asyncio.sleep(self.s.backoff.delay(attempt))
            self.tracker.done(part.tp, record.offset)
            part.unfinished -= 1
            part.finished(key)
            if part.tp in self._paused:
                self._resume_if_room(part.tp)
            self.stats.inc("processed", topic=record.topic)

    async def _handle(self, record: Record, verdict: ValidEvent | Rejection) -> None:
        headers = getattr(record, "headers", None)
        if not headers or self.tracer is None:
            # No header, so no `traceparent` to continue: `record_span` would make no
            # span (most records); skip building its name and attributes.
            await self._store(record, verdict)
            return
        # A child of the span that produced the record (its `traceparent` header).
        place = {"messaging.destination.partition.id": str(record.partition)}
        place |= {"messaging.kafka.offset": str(record.offset), "lineagehub.store": "marquez"}
        with record_span(self.tracer, f"store {record.topic}", record.topic, headers, place):
            await self._store(record, verdict)

    async def _store(self, record: Record, verdict: ValidEvent | Rejection) -> None:
        if isinstance(verdict, Rejection):
            await self._dead_letter(record, verdict)
            return
        started = time.monotonic()
        try:
            await self._post(record, verdict)
        finally:
            if self.health.reasons:  # else there is nothing to recover from
                self.health.recover(_source(record))
        self.stats.stored(record.topic, time.monotonic() - started)

    async def _post(self, record: Record, verdict: ValidEvent) -> None:
        body = record.value or b""
        attempt = server_errors = 0
        stored_at_failure: int | None = None  # self._stored when this event last failed
        while True:
            test = False if self.gate.is_up else await self.gate.wait_up()
            try:
                result = await self.marquez.post(body)
            except BaseException:
                if test:
                    self.gate.tested(None)
                raise
            if result.outcome is Outcome.STORED:
                self._stored += 1
                self.gate.success()
                self.stats.inc("posted", event_type=verdict.event_type or _no_type(verdict))
                return
            if result.outcome is Outcome.REJECTED:
                if test:
                    self.gate.tested(None)
                await self._dead_letter(record, Rejection("http_4xx", result.detail))
                return
            attempt += 1
            self.stats.inc("retried", cause=str(result.status or "network"))
            server_error = result.status is not None and result.status >= 500
            if server_error:
                server_errors += 1
                # Poison only if Marquez stored other events since this one last failed:
                # the same 5xx for every event is Marquez's (a read-only database), not theirs.
                proven = stored_at_failure is not None and self._stored > stored_at_failure
                stored_at_failure = self._stored
                if proven and server_errors >= self.s.max_server_error_attempts:
                    if test:
                        self.gate.tested(False)
                    await self._dead_letter(record, Rejection("http_5xx", result.detail))
                    return
            log.info(
                "marquez transient failure",
                extra={"attempt": attempt, "detail": result.detail, "key": verdict.key},
            )
            if test:
                self.gate.tested(False)
            elif self.gate.failure(f"{record.partition}@{record.offset}" if server_error else None):
                self._on_marquez_down(result.detail)
            if self.gate.is_up:
                if attempt >= self.s.breaker_threshold:  # failing alone: the gate stays up
                    detail = f"an event keeps failing: {result.detail}"[:300]
                    self.health.degrade(_source(record), detail)
                await asyncio.sleep(self.s.backoff.delay(attempt))

    async def _dead_letter(self, record: Record, rejection: Rejection) -> None:
        assert self._dlq is not None
        attempt = 0
        while True:
            try:
                await self._dlq.send(record, rejection)
                break
            except KafkaError as exc:
                attempt += 1
                log.warning("DLQ publish failed, retrying", extra={"error": str(exc)})
                await asyncio.sleep(self.s.backoff.delay(attempt))
        self.stats.inc("dead_lettered", topic=record.topic, reason=rejection.reason)
        trace.get_current_span().set_status(StatusCode.ERROR, f"dead-lettered: {rejection.reason}")

    # ---- Marquez down: pause, probe, resume -----------------------------------------------

    def _on_marquez_down(self, detail: str) -> None:
        log.warning("marquez unavailable: pausing partitions", extra={"detail": detail})
        self.health.degrade("marquez", f"marquez unavailable: {detail}")
        self._flow_control()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe(), name="marquez-prober")

    async def _probe(self) -> None:
        """Until Marquez stores again: ping it, and when it answers let one event test it."""
        attempt = 0
        while not (await self.marquez.ping() and await self.gate.test()):
            attempt += 1
            await asyncio.sleep(self.s.backoff.delay(attempt))
        log.info("marquez is back: resuming")
        self.health.recover("marquez")
        self._flow_control()

    def _room(self, tp: TopicPartition, unfinished: int) -> bool:
        """At most `unfinished` records of `tp` unfinished, and room for more offsets."""
        part = self._parts.get(tp)
        if part is not None and part.unfinished > unfinished:
            return False
        return self.tracker.in_flight(tp) < self.s.max_uncommitted

    def _resume_if_room(self, tp: TopicPartition) -> None:
        """Resume a partition paused for its in-flight limit as soon as half is done."""
        consumer = self._consumer
        if (
            consumer is None
            or self._stopping
            or not self.gate.is_up
            or not self._room(tp, self.s.max_in_flight // 2)
            or tp not in consumer.assignment()
        ):
            return
        consumer.resume(tp)
        self._paused.discard(tp)

    def _flow_control(self) -> None:
        """Pause a partition when Marquez is down or too much of it is in flight."""
        consumer = self._consumer
        if consumer is None or self._stopping:
            return
        assigned = consumer.assignment()
        pause, resume = set(), set()
        for tp in assigned:
            if not self.gate.is_up or not self._room(tp, self.s.max_in_flight - 1):
                pause.add(tp)
            elif tp in self._paused and self._room(tp, self.s.max_in_flight // 2):
                resume.add(tp)
        pause -= self._paused
        if pause:
            consumer.pause(*pause)
            self._paused |= pause
        if resume:
            consumer.resume(*resume)
            self._paused -= resume
        self._paused &= assigned

    # ---- offsets and rebalances -------------------------------------------------------------

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {
            tp: off
            for tp, off in self.tracker.to_commit().items()
            if tp in assigned and (only is None or tp in only)
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit failed; will retry", extra={"error": str(exc)})
            return
        self.tracker.committed(offsets)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        """Let in-flight events of the revoked partitions finish (bounded), commit, forget."""
        for tp in revoked:
            if tp in self._parts:
                self._parts[tp].revoked = True  # a dispatch between slices stops there
        await wait_until(
            lambda: not any(self.tracker.in_flight(tp) for tp in revoked), self.s.revoke_timeout
        )
        await self._commit(revoked)
        for tp in revoked:
            part = self._parts.pop(tp, None)
            if part is not None:
                await self._stop_workers(part)
            self.tracker.forget(tp)
            self._paused.discard(tp)
            self.stats.drop_lag(tp.topic, tp.partition)

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        self._flow_control()

    async def _stop_workers(self, part: _Partition) -> None:
        for task in part.workers:
            task.cancel()
        for task in part.workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
