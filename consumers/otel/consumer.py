"""The otel consumer loop: Kafka `otel-spans` / `otel-metrics` -> OTLP decode -> ClickHouse.

Batches are per partition, bounded by rows, messages and time. Offsets are
committed only after the batch's rows are inserted (and its undecodable records
dead-lettered), so delivery is at-least-once.

Idempotency (a redelivered batch adds no rows to query results):

* Every insert carries `insert_deduplication_token =
  <group>/<topic>/<partition>/<first>-<last>/<digest>/<table>` (`<digest>`: a hash of the
  batch's records, offsets, timestamps, keys and values) and the tables keep a
  deduplication window (`ddl.DEDUP_WINDOW`), so ClickHouse drops an insert whose token it
  has seen, the materialized view included
  (`deduplicate_blocks_in_dependent_materialized_views`). No FINAL, no engine change:
  Grafana and other OTel tools query the exporter's tables as they are. The group and the
  digest keep apart batches that only share a topic name and offsets: another release
  writing the same database, a topic deleted and created again.
* A token only matches if the redelivered batch has the *same* boundaries. Before
  inserting, the consumer records the batch's last offset and digest in the partition's
  commit metadata (`pending:<last>/<digest>`, with the offset left at the batch's first).
  A consumer that gets the partition after a crash reads that marker and rebuilds exactly
  that batch, under that digest, before batching freely again. After the insert it
  commits `<last>+1` with empty metadata.

Time limits never cut a replayed batch, so the rebuilt batch and its token are
identical whatever the timing.

Store failures against poison (see `_insert_table` and `_isolate`): an error ClickHouse
gives whatever the rows (read-only, disk full, too many parts, memory, timeouts:
`backend.STORE_SIDE_CODES`), or any error while nothing else is accepted, is an outage:
the batch waits and retries (the partition fetches no further than its next batch),
`/healthz` says degraded, nothing is dead-lettered or committed past it. A record is
dead-lettered only when its rows fail, then other rows of the same table are accepted,
then its rows fail again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from consumers.aio import wait_until
from consumers.dlq import DeadLetterQueue, Record, Rejection
from consumers.gc_tuning import tune_for_consuming
from consumers.hashing import compiled_batch_digest, update_holding_gil
from consumers.health import Health
from consumers.kafka import (
    KAFKA_CHECK_INTERVAL,
    RETRY_BACKOFF_MS,
    Rebalance,
    ask_through,
    make_producer,
    update_lag,
    watch_cluster,
)
from consumers.librdkafka_consumer import (
    CommitFailed,
    LibrdkafkaConsumer,
    consumer_config,
    metadata_text,
)
from consumers.otel.arrow_decoders import decode_metric_record, decode_span_record
from consumers.otel.backend import Backend, BackendError
from consumers.otel.columns import Pending, Rows, head, join
from consumers.otel.ddl import OTEL_SCHEMA, Schema
from consumers.otel.decode import STOPPING, DecodeError, decoder_failure
from consumers.retry import Backoff
from consumers.stats import Stats
from lineagehub.store_spans import SpanRecorder, batch_store_spans
from lineagehub.topics import METRICS_TOPIC, SPANS_TOPIC

log = logging.getLogger(__name__)
NAME = "otel"
PENDING = "pending:"


# A record's rows per table: `columns.Columns` or `columns.ArrowRows` (the OTLP
# decoders), row dicts, or `columns.Pending`: decoded with the rest of its batch when the
# batch is flushed (`arrow_spans`, `arrow_metrics`).
Decoder = Callable[[bytes | None], Mapping[str, Rows | Pending]]
DECODERS: dict[str, Decoder] = {
    SPANS_TOPIC: decode_span_record,
    METRICS_TOPIC: decode_metric_record,
}


@dataclass
class OtelSettings:
    bootstrap: str
    group: str = "lineagehub-otel"
    topics: tuple[str, ...] = (SPANS_TOPIC, METRICS_TOPIC)
    max_batch_rows: int = 10_000
    max_batch_messages: int = 2_000
    max_batch_wait: float = 1.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.2, factor=2.0, cap=15.0))
    max_insert_attempts: int = 5  # creating the tables
    lag_interval: float = 5.0
    kafka_check_interval: float = KAFKA_CHECK_INTERVAL  # `/healthz` degraded while away
    # In-flight inserts get this long after SIGTERM, well inside the pod's grace period
    # (see consumers/cli.py); what is cut is replayed from the `pending:` marker.
    shutdown_timeout: float = 20.0
    revoke_timeout: float = 10.0
    ttl_days: int = 0
    fetch_max_records: int = 2_000
    tune_gc: bool = True  # consumers.gc_tuning for the process (the bench compares without)
    client_id: str = "lineagehub-otel"
    name: str = NAME  # the consumer's name in metrics, logs and dead letters


@dataclass(slots=True)
class _Message:
    record: Record
    tables: Mapping[str, Rows | Pending] | None
    rejection: Rejection | None


@dataclass
class _Batch:
    tp: TopicPartition
    replay_start: int | None = None  # set: rebuild exactly [replay_start, replay_end] first
    replay_end: int | None = None
    digest: str | None = None  # of the records; a replayed batch takes its marker's
    legacy: bool = False  # replaying a marker written before tokens had a group and digest
    messages: list[_Message] = field(default_factory=list)
    rows: int = 0
    first_at: float = 0.0

    @property
    def start(self) -> int:
        if self.replay_start is not None:
            return self.replay_start
        return self.messages[0].record.offset

    @property
    def end(self) -> int:
        return self.replay_end if self.replay_end is not None else self.messages[-1].record.offset


@dataclass
class _Partition:
    tp: TopicPartition
    batch: _Batch
    last_offset: int = -1
    flushing: asyncio.Task[bool] | None = None
    committed: int | None = None
    broken: bool = False  # a flush failed: re-read from the committed offset


@dataclass
class _Table:
    """Inserts into one table as this consumer saw them: how many were accepted, and
    the last accepted one (its first row and its token) to send again as a probe: an
    insert ClickHouse has seen is dropped by its token, so the probe never adds a row,
    yet it goes through every check a new insert does (read-only, disk space, parts,
    constraints, the materialized views' targets)."""

    accepted: int = 0
    probe: tuple[Rows, str] | None = None


def _settled(message: _Message) -> dict[str, Rows]:
    """A message's tables once `_settle` has decoded it (a `Pending` left is a bug)."""
    out: dict[str, Rows] = {}
    for table, rows in (message.tables or {}).items():
        if isinstance(rows, Pending):
            raise RuntimeError(f"offset {message.record.offset}: {table} was never decoded")
        out[table] = rows
    return out


def batch_digest(records: Sequence[Record]) -> str:
    """A hash of what a batch holds: the same records give the same digest (a redelivered
    batch keeps its token), a topic created again under the same name does not.

    SHA-256 (its first 12 bytes): with the CPU's SHA instructions, which OpenSSL uses,
    it hashes a batch's values ~1.7x faster than BLAKE2b, which Python's hashlib runs in
    portable C. A replay takes its marker's digest, whichever hash a release used.

    The compiled one (`consumers.hashing.compiled_batch_digest`) gives the same digits
    without a Python step per record and without the GIL (the decoding worker runs
    meanwhile); `python_batch_digest` is the reference, and decides the records the
    compiled one does not read (anything but aiokafka's ints and bytes)."""
    if compiled_batch_digest is not None and isinstance(records, list):
        digest = compiled_batch_digest(records)
        if digest is not None:
            return digest
    return python_batch_digest(records)


def python_batch_digest(records: Sequence[Record]) -> str:
    """`batch_digest` in Python, fed so that it keeps the GIL (`consumers.hashing`)."""
    h = hashlib.sha256()
    update = h.update
    for r in records:
        key, value = r.key, r.value
        stamp = getattr(r, "timestamp", 0)
        sizes = f"{-1 if key is None else len(key)}:{-1 if value is None else len(value)}"
        update(f"{r.offset}:{stamp}:{sizes}:".encode())
        if key:
            update_holding_gil(h, key)
        if value:
            update_holding_gil(h, value)
    return h.hexdigest()[:24]


class OtelConsumer:
    def __init__(
        self,
        settings: OtelSettings,
        backend: Backend,
        stats: Stats | None = None,
        health: Health | None = None,
        decoders: dict[str, Decoder] | None = None,
        schema: Schema = OTEL_SCHEMA,
    ) -> None:
        self.s = settings
        self.backend = backend
        self.stats = stats or Stats(settings.name)
        self.health = health or Health()
        self.decoders = decoders or DECODERS
        self.schema = schema
        # Our own spans, one per stored record that carries a trace context (the lineage
        # warehouse writer's); never set for the spans topic's consumer.
        self.tracer: SpanRecorder | None = None
        self._parts: dict[TopicPartition, _Partition] = {}
        self._paused: set[TopicPartition] = set()
        # Assigned, but an install is still reading their commit metadata: their records
        # wait in `_early` until it knows where each partition starts (see `_install`).
        # Each partition maps to the latest install started for it: a rewind's and a
        # rebalance's may overlap, and only the latest installs the partition.
        self._installing: dict[TopicPartition, int] = {}
        self._installs = 0
        self._early: dict[TopicPartition, list[Record]] = {}
        self._tables: dict[str, _Table] = {}
        self._rewinds: dict[TopicPartition, int] = {}
        self._consumer: LibrdkafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._dlq: DeadLetterQueue | None = None
        self._stopping = False
        self._aborted = False
        self._recovery: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if self.s.tune_gc:
            tune_for_consuming()
        statements = self.schema.create(self.backend.database, self.s.ttl_days)
        await self._retry("create tables", lambda: self.backend.setup(statements))
        self._producer = make_producer(self.s.bootstrap, f"{self.s.client_id}-dlq")
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.s.bootstrap,
            client_id=f"{self.s.client_id}-admin",
            retry_backoff_ms=RETRY_BACKOFF_MS,
        )
        self._consumer = LibrdkafkaConsumer(
            consumer_config(self.s.bootstrap, self.s.group, self.s.client_id)
        )
        self._dlq = DeadLetterQueue(self._producer, self.s.name)
        await self._producer.start()
        await self._admin.start()
        await self._consumer.start()
        listener = Rebalance(self._revoked, self._assigned)
        self._consumer.subscribe(list(self.s.topics), listener=listener)
        self._watch = asyncio.create_task(
            # Through the admin client's connection: librdkafka holds up any call on the
            # group member's handle while a rebalance callback runs (a slow revoke would
            # read as an outage).
            watch_cluster(
                partial(ask_through, self._admin._client, self.s.topics),
                self.health,
                self.s.name,
                self.s.kafka_check_interval,
            ),
            name=f"{self.s.name}-kafka-watch",
        )
        self.health.started = True
        log.info(
            f"{self.s.name} consumer started",
            extra={"topics": self.s.topics, "group": self.s.group},
        )
        try:
            await self._loop(stop)
        finally:
            await self._shutdown()

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        next_lag = 0.0
        while not stop.is_set() and not self._aborted:
            batches = await self._consumer.getmany(
                timeout_ms=100, max_records=self.s.fetch_max_records
            )
            for tp, records in batches.items():
                if tp in self._installing:
                    self._early.setdefault(tp, []).extend(records)  # `_install` decides
                    continue
                for record in records:
                    self._add(tp, record)
            now = time.monotonic()
            for part in list(self._parts.values()):
                self._maybe_flush(part, now)
            if now >= next_lag:
                await update_lag(self._consumer, self.stats, self._committed)
                next_lag = now + self.s.lag_interval

    def abort(self) -> None:
        """Stop like a crash: no flush, no commit (what a killed process leaves behind)."""
        self._aborted = True
        for part in self._parts.values():
            if part.flushing is not None:
                part.flushing.cancel()

    async def _shutdown(self) -> None:
        """Flush what is buffered, wait for in-flight inserts, commit, leave the group."""
        self._stopping = True
        self.health.stopping = True
        consumer = self._consumer
        if self._aborted:
            self._parts.clear()
        if consumer is not None and consumer.assignment():
            consumer.pause(*consumer.assignment())
        for part in list(self._parts.values()):
            self._maybe_flush(part, time.monotonic(), force=True)
        tasks = [p.flushing for p in self._parts.values() if p.flushing is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.s.shutdown_timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown timeout: unflushed batches will be redelivered")
        if self._watch is not None:
            self._watch.cancel()
        if consumer is not None:
            await consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._admin is not None:
            await self._admin.close()
        log.info(f"{self.s.name} consumer stopped")

    # ---- batching ----------------------------------------------------------------------

    def _part(self, tp: TopicPartition) -> _Partition:
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition(tp, _Batch(tp))
        return part

    def _committed(self, tp: TopicPartition) -> int | None:
        part = self._parts.get(tp)
        return part.committed if part else None

    def _add(self, tp: TopicPartition, record: Record) -> None:
        part = self._part(tp)
        if record.offset <= part.last_offset:
            return
        part.last_offset = record.offset
        batch = part.batch
        if batch.replay_end is not None and record.offset > batch.replay_end:
            # The replayed batch is complete even though its last offsets are gone.
            self._seal(part)
            batch = part.batch
        decoder = self.decoders.get(record.topic)
        try:
            if decoder is None:
                raise DecodeError("unknown_topic", f"no decoder for topic {record.topic}")
            tables = decoder(record.value)
            message = _Message(record, tables, None)
            batch.rows += sum(map(len, tables.values()))
        except DecodeError as exc:
            message = _Message(record, None, Rejection(exc.reason, exc.detail))
        except STOPPING:
            raise
        except BaseException as exc:
            log.exception(f"decoder for {record.topic} failed at offset {record.offset}")
            failure = decoder_failure(exc)
            message = _Message(record, None, Rejection(failure.reason, failure.detail))
        if not batch.messages:
            batch.first_at = time.monotonic()
        batch.messages.append(message)
        if batch.replay_end is None and (
            batch.rows >= self.s.max_batch_rows or len(batch.messages) >= self.s.max_batch_messages
        ):
            self._seal(part)  # full: cut here, whatever else this fetch returned
            self._pause(tp)  # resumed when the flush chain catches up

    def _ready(self, part: _Partition, now: float) -> bool:
        batch = part.batch
        if not batch.messages:
            return False
        if batch.replay_end is not None:
            if batch.messages[-1].record.offset >= batch.replay_end:
                return True
            # The rest of the replayed range no longer exists (retention): take what is there.
            high = self._consumer.highwater(part.tp) if self._consumer is not None else None
            stale = now - batch.first_at >= 10 * self.s.max_batch_wait
            return stale and high is not None and high <= part.last_offset + 1
        return (
            batch.rows >= self.s.max_batch_rows
            or len(batch.messages) >= self.s.max_batch_messages
            or now - batch.first_at >= self.s.max_batch_wait
        )

    def _maybe_flush(self, part: _Partition, now: float, force: bool = False) -> None:
        if not (self._ready(part, now) or (force and part.batch.messages)):
            return
        if part.flushing is not None and not part.flushing.done():
            self._pause(part.tp)  # one batch in flight per partition; hold the next
            return
        self._seal(part)

    def _seal(self, part: _Partition) -> None:
        """Hand the current batch to a flush task (chained after the previous one)."""
        batch = part.batch
        part.batch = _Batch(part.tp)
        previous = part.flushing
        part.flushing = asyncio.create_task(
            self._flush(part, batch, previous), name=f"flush-{part.tp.topic}-{part.tp.partition}"
        )

    # ---- flushing ----------------------------------------------------------------------

    async def _flush(
        self, part: _Partition, batch: _Batch, previous: asyncio.Task[bool] | None
    ) -> bool:
        """Commit the marker, dead-letter, insert, commit; True when the batch is committed."""
        if previous is not None:
            # asyncio.wait: our own cancellation still raises, the previous one's outcome doesn't.
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                # The batch before this one never got committed: committing this one's start
                # would skip it. Leave both to the replay from the partition's marker.
                self._broken(part)
                return False
        if self._aborted:
            return False
        started_ns = time.time_ns()
        consumer = self._consumer
        assert consumer is not None
        tp, start, end = batch.tp, batch.start, batch.end
        if batch.digest is None:
            batch.digest = batch_digest([m.record for m in batch.messages])
        try:
            if batch.replay_end is None:
                # Record the batch boundaries before inserting (see the module docstring).
                marker = f"{PENDING}{end}/{batch.digest}"
                await consumer.commit({tp: OffsetAndMetadata(start, marker)})
            await self._settle(batch)
            for message in batch.messages:
                if message.rejection is not None:
                    await self._dead_letter(message.record, message.rejection)
            await self._insert(part, batch, self._token(batch))
            # The store took the batch: say so before the commit, which is what a reader
            # of the group's offsets (a probe, a test) sees first.
            self.health.recover(self._source(tp))
            await consumer.commit({tp: OffsetAndMetadata(end + 1, "")})
        except CommitFailed as exc:
            # The partition moved to another member: it replays from the marker.
            log.warning(
                "commit failed; batch left to the next owner",
                extra={"topic": tp.topic, "partition": tp.partition, "error": str(exc)},
            )
            self._broken(part)
            return False
        except Exception as exc:
            # A bug, not a store or a record: never skip the batch, never spin on it silently.
            log.exception("flush failed; the partition rewinds to its commit")
            self.health.degrade(self._source(tp), f"{self.s.name}: flush failing: {exc!r}"[:300])
            self._broken(part)
            return False
        part.committed = end + 1
        self._rewinds.pop(tp, None)
        self.stats.inc("processed", len(batch.messages), topic=tp.topic)
        self.stats.inc("batches", topic=tp.topic)
        self.stats.stored(tp.topic, (time.time_ns() - started_ns) / 1e9)
        if self.tracer is not None:
            records = [m.record for m in batch.messages]
            where = {"lineagehub.store": "clickhouse"}
            batch_store_spans(self.tracer, f"store {tp.topic}", records, started_ns, where)
        log.debug(
            "batch flushed",
            extra={"topic": tp.topic, "partition": tp.partition, "first": start, "last": end},
        )
        if part.flushing is asyncio.current_task():
            self._resume(tp)  # the last batch in the chain is done: fetch again
        return True

    async def _settle(self, batch: _Batch) -> None:
        """Decode the records left to their batch (`columns.Pending`), a batch at a time in
        a worker thread: each gets its tables or its rejection, as if decoded alone. The
        same records give the same rows, so a replayed batch inserts the same."""
        pending: dict[Callable[[list[bytes]], list[object]], list[tuple[_Message, Pending]]] = {}
        for message in batch.messages:
            for rows in (message.tables or {}).values():
                if isinstance(rows, Pending):
                    pending.setdefault(rows.batch, []).append((message, rows))
        for decode, items in pending.items():
            results = await asyncio.to_thread(decode, [rows.raw for _, rows in items])
            for (message, _), result in zip(items, results, strict=True):
                if isinstance(result, DecodeError):
                    message.tables = None
                    message.rejection = Rejection(result.reason, result.detail)
                else:
                    message.tables = cast(Mapping[str, Rows], result)

    def _token(self, batch: _Batch) -> str:
        tp = batch.tp
        if batch.legacy:  # the token the marker's writer inserted under
            return f"{tp.topic}/{tp.partition}/{batch.start}-{batch.end}"
        return f"{self.s.group}/{tp.topic}/{tp.partition}/{batch.start}-{batch.end}/{batch.digest}"

    def _source(self, tp: TopicPartition) -> str:
        """Who reports a partition's trouble to the shared Health."""
        return f"{self.s.name} {tp.topic}/{tp.partition}"

    def _broken(self, part: _Partition) -> None:
        """After a failed flush, rewind the partition to what Kafka has committed."""
        if part.broken or self._aborted or self._stopping:
            return
        part.broken = True
        self._pause(part.tp)  # nothing more from it until it is rewound
        self._rewinds[part.tp] = self._rewinds.get(part.tp, 0) + 1
        self._recovery = asyncio.create_task(self._recover(part))

    async def _recover(self, part: _Partition) -> None:
        consumer = self._consumer
        assert consumer is not None
        tp = part.tp
        if part.flushing is not None:
            await asyncio.wait([part.flushing])
        # A batch that fails again and again is retried ever more slowly, not in a tight loop.
        await asyncio.sleep(self.s.backoff.delay(self._rewinds.get(tp, 1)))
        if self._parts.get(tp) is not part or tp not in consumer.assignment() or self._stopping:
            return  # revoked meanwhile: the next owner starts from the commit
        del self._parts[tp]
        # Marker, replay batch, seek to the committed offset.
        if tp not in await self._install({tp}):
            return  # a rebalance installs the partition meanwhile: its install decides
        fresh = self._parts[tp]
        if fresh.committed is None and tp in consumer.assignment():
            # Nothing committed yet: from where the reset policy (earliest) starts.
            beginning = (await consumer.beginning_offsets([tp]))[tp]
            if self._parts.get(tp) is fresh and tp in consumer.assignment():
                consumer.seek(tp, beginning)
        log.info(
            "partition rewound to its committed offset", extra={"tp": f"{tp.topic}/{tp.partition}"}
        )
        self._resume(tp)

    # ---- inserting: outages against poison -----------------------------------------------

    def _table(self, name: str) -> _Table:
        return self._tables.setdefault(name, _Table())

    async def _insert(self, part: _Partition, batch: _Batch, token: str) -> None:
        parts: dict[str, list[Rows]] = {}
        for message in batch.messages:
            for table, rows in _settled(message).items():
                parts.setdefault(table, []).append(rows)
        for table, pieces in parts.items():
            rows = join(self.schema.tables.get(table), pieces)
            failed_at: dict[int, int] = {}  # offset -> accepted inserts when its rows failed
            rounds = 0
            while True:
                try:
                    await self._insert_table(part, table, rows, f"{token}/{table}")
                    break
                except BackendError as exc:
                    log.warning(
                        "batch insert refused; record by record now",
                        extra={"table": table, "error": str(exc)[:500]},
                    )
                    rounds += 1
                    done = await self._isolate(
                        part, batch, table, f"{token}/{table}", failed_at, rounds
                    )
                    if done:
                        break

    async def _insert_table(self, part: _Partition, table: str, rows: Rows, token: str) -> None:
        """Insert; wait out what the store fails on, whatever the rows (it says so, or it
        stops answering). Raise BackendError for anything else: `_isolate` tells whether
        the rows or the store are at fault."""
        if not len(rows):
            return
        attempt = 0
        while True:
            try:
                await self._send(table, rows, token)
                return
            except BackendError as exc:
                if not exc.transient and await self.backend.ping():
                    raise
                attempt += 1
                self._outage(part, table, exc, attempt)
                await asyncio.sleep(self.s.backoff.delay(attempt))

    async def _isolate(
        self,
        part: _Partition,
        batch: _Batch,
        table: str,
        token: str,
        failed_at: dict[int, int],
        rounds: int,
    ) -> bool:
        """The batch's insert into `table` was refused: insert record by record.

        A record whose rows fail is dead-lettered only once its rows failed, then an
        insert of other rows into the table was accepted (another record of this batch,
        another partition's batch, or the table's probe), then its rows failed again.
        When every record fails and nothing else is accepted, the store is at fault:
        wait for it, dead-letter nothing, and (if no record was settled one by one) return
        False: the caller tries the whole batch again, under the token a replay would use.
        """
        tally = self._table(table)
        todo = [(m, rows) for m in batch.messages if (rows := _settled(m).get(table))]
        settled = False
        self.health.degrade(
            self._source(part.tp), f"{self.s.name}: {table} refused a batch; record by record"
        )
        while todo:
            left: list[tuple[_Message, Rows]] = []
            error: BackendError | None = None
            for message, rows in todo:
                offset = message.record.offset
                try:
                    await self._insert_table(part, table, rows, f"{token}/{offset}")
                    settled = True
                    continue
                except BackendError as exc:
                    error = exc
                    seen = failed_at.get(offset)
                    if seen is not None and tally.accepted > seen:
                        await self._dead_letter(
                            message.record, Rejection("insert_failed", str(exc))
                        )
                        settled = True
                        continue
                    failed_at[offset] = tally.accepted
                    left.append((message, rows))
            todo = left
            if not todo or error is None:
                break
            if any(tally.accepted > failed_at[m.record.offset] for m, _ in todo):
                continue  # rows were accepted since they failed: their next failure decides
            # Nothing accepted since: the same failure for different records is the store's.
            await self._await_table(part, table, error, rounds)
            if not settled:
                return False
            rounds += 1
        return True

    async def _await_table(
        self, part: _Partition, table: str, error: BackendError, rounds: int
    ) -> None:
        """Every insert into `table` fails: back off, then send the table's probe until it
        is accepted (without a probe, the records themselves probe on the next round)."""
        tally = self._table(table)
        attempt = rounds
        while True:
            self._outage(part, table, error, attempt)
            await asyncio.sleep(self.s.backoff.delay(attempt))
            if tally.probe is None:
                return
            rows, token = tally.probe
            try:
                await self._send(table, rows, token, probe=True)
                return
            except BackendError as exc:
                error = exc
                attempt += 1

    async def _send(self, table: str, rows: Rows, token: str, probe: bool = False) -> None:
        """One insert. Whatever goes wrong comes out as BackendError: an unexpected error
        (a driver's, a row missing a column) must go through `_isolate` like the others."""
        try:
            await self.backend.insert(self.schema.tables[table], rows, token)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}"[:2000], transient=False) from exc
        tally = self._table(table)
        tally.accepted += 1
        tally.probe = (head(rows, 1), token)
        if not probe:
            self.stats.inc("inserted_rows", len(rows), table=table)

    def _outage(self, part: _Partition, table: str, error: BackendError, attempt: int) -> None:
        self.stats.inc("retried", cause="clickhouse")
        self.health.degrade(
            self._source(part.tp),
            f"{self.s.name}: clickhouse refuses inserts into {table}: {str(error)[:200]}",
        )
        log.warning(
            "insert failing for every record; waiting",
            extra={"table": table, "attempt": attempt, "error": str(error)[:500]},
        )

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

    async def _retry(self, what: str, call: Callable[[], object]) -> None:
        attempt = 0
        while True:
            try:
                result = call()
                if asyncio.iscoroutine(result):
                    await result
                return
            except BackendError as exc:
                attempt += 1
                if not exc.transient and attempt >= self.s.max_insert_attempts:
                    raise
                log.warning(f"{what} failed, retrying", extra={"error": str(exc)[:500]})
                await asyncio.sleep(self.s.backoff.delay(attempt))

    # ---- flow control and rebalances ---------------------------------------------------

    def _pause(self, tp: TopicPartition) -> None:
        if self._consumer is not None and tp not in self._paused and not self._stopping:
            self._consumer.pause(tp)
            self._paused.add(tp)

    def _resume(self, tp: TopicPartition) -> None:
        if self._consumer is not None and tp in self._paused and not self._stopping:
            if tp in self._consumer.assignment():
                self._consumer.resume(tp)
            self._paused.discard(tp)

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        """The rebalance listener: install what the group assigned us."""
        await self._install(assigned)

    async def _install(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """Read each partition's commit metadata (a `pending:` marker means replay first);
        the partitions this call installed.

        A rebalance's install runs inside librdkafka's assignment callback, before any
        record of the partitions comes out (`LibrdkafkaConsumer`), and a seek then is
        where the partition starts. Records that come for a partition an install is
        still reading (a rewind's) wait in `_early`: a partition with a commit is then
        sought back to it and they are dropped (read again into the replayed batch,
        never batched outside it and committed past); a partition without one started
        where the reset policy put it, and they are batched as they came.

        A rewind (`_recover`) installs its partition too, and a rebalance may assign it
        again while the rewind's read is on its way. The install started last decides:
        an earlier one ending first leaves the partition installing (its records still
        wait in `_early`), and one ending after it leaves the partition alone.
        """
        consumer = self._consumer
        if not assigned or self._admin is None or consumer is None:
            return set()
        self._installs += 1
        install = self._installs
        for tp in assigned:
            self._installing[tp] = install
        installed: set[TopicPartition] = set()
        try:
            attempt = 0
            while True:
                try:
                    committed = await self._admin.list_consumer_group_offsets(
                        self.s.group, partitions=sorted(assigned)
                    )
                    break
                except KafkaError as exc:
                    # Without the marker a replay could batch differently: never guess, retry.
                    attempt += 1
                    log.warning("cannot read committed offsets yet", extra={"error": str(exc)})
                    await asyncio.sleep(self.s.backoff.delay(attempt))
            # From here on no await: the loop must not add records before this is done.
            for tp in assigned:
                if self._installing.get(tp) != install:
                    continue  # a later install of the partition decides
                installed.add(tp)
                part = self._parts[tp] = _Partition(tp, _Batch(tp))
                early = self._early.pop(tp, [])
                meta = committed.get(tp)
                if meta is None or meta.offset < 0:
                    for record in early:
                        self._add(tp, record)
                    continue
                part.committed = meta.offset
                if tp in consumer.assignment():
                    consumer.seek(tp, meta.offset)
                marker = metadata_text(meta.metadata)
                if marker.startswith(PENDING):
                    last, _, digest = marker[len(PENDING) :].partition("/")
                    part.batch = _Batch(
                        tp,
                        replay_start=meta.offset,
                        replay_end=int(last),
                        digest=digest or None,
                        legacy=not digest,
                    )
                    log.info(
                        "replaying an unconfirmed batch",
                        extra={
                            "tp": f"{tp.topic}/{tp.partition}",
                            "first": meta.offset,
                            "last": int(last),
                        },
                    )
        finally:
            for tp in assigned:
                if self._installing.get(tp) == install:
                    del self._installing[tp]
                    self._early.pop(tp, None)
        return installed

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait (bounded) for in-flight inserts; drop unflushed batches (the next owner
        reads them again from the committed offset)."""
        tasks = [
            self._parts[tp].flushing
            for tp in revoked
            if tp in self._parts and self._parts[tp].flushing is not None
        ]
        await wait_until(lambda: all(t is None or t.done() for t in tasks), self.s.revoke_timeout)
        for tp in revoked:
            part = self._parts.pop(tp, None)
            if part is not None and part.flushing is not None and not part.flushing.done():
                part.flushing.cancel()
            # An install on its way (a rewind's) must not put back a partition no longer
            # ours, nor batch the records fetched before the revoke.
            self._installing.pop(tp, None)
            self._early.pop(tp, None)
            self._paused.discard(tp)
            self._rewinds.pop(tp, None)
            self.health.recover(self._source(tp))
            self.stats.drop_lag(tp.topic, tp.partition)
