"""`lineage-hub consume lineage|otel|warehouse`: run one consumer until SIGTERM/SIGINT.

The ClickHouse side (chdb, pyarrow, clickhouse-driver: ~270 MiB resident once loaded,
chdb's library alone ~200 MiB) is imported only by the commands that write to it, so
`consume lineage` stays small at rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from consumers import logs
from consumers.health import ApiHandler, Health, HealthServer
from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.sql_http import Runner
from consumers.stats import Stats
from lineagehub import selftrace
from lineagehub.store_spans import SpanRecorder
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC

if TYPE_CHECKING:
    from consumers.otel.backend import Backend
    from consumers.otel.consumer import OtelConsumer

log = logging.getLogger(__name__)
#: The lineage consumer's own spans' service name.
LINEAGE_SERVICE = "lineage-hub-consumer-lineage"
WAREHOUSE_SERVICE = "lineage-hub-consumer-warehouse"

# SIGTERM to exit, as a pod sees it. Kubernetes sends SIGTERM, waits the pod's
# terminationGracePeriodSeconds (30 unless set; the chart sets 45 for the consumers,
# `consumers.terminationGracePeriodSeconds`), then SIGKILLs. Within that a consumer:
# * waits for in-flight POSTs / inserts, at most SHUTDOWN_TIMEOUT (20 s): during an
#   outage they never finish, and this wait is all used up;
# * then commits what was stored, leaves the group and flushes the DLQ producer: a few
#   Kafka round trips, SHUTDOWN_TAIL (15 s) of room even against a slow broker.
# 20 + 15 = 35 < 45: the final commit happens before SIGKILL, so what was stored is not
# delivered again. (Were the wait 30 s with the default 30 s grace, the commit after it
# would always be cut during an outage.)
SHUTDOWN_TIMEOUT = 20.0
SHUTDOWN_TAIL = 15.0


_N = TypeVar("_N", int, float)


def _bounded(
    text: str, parse: Callable[[str], _N], noun: str, ok: Callable[[_N], bool], rule: str
) -> _N:
    """`text` parsed as `noun`, refused with `rule` unless `ok`: a value a consumer cannot
    use is refused as it starts, naming the option, not met on its first fetch."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text} {rule}")
    return value


def at_least_one(text: str) -> int:
    """A count the consumer divides work by or waits on (0 or less would stall or crash
    it on its first fetch)."""
    return _bounded(text, int, "a whole number", lambda v: v >= 1, "must be at least 1")


def days(text: str) -> int:
    """A retention in days: 0 keeps rows for ever; a negative number is refused rather
    than read as 0 (no TTL), which would keep what its user meant to expire."""
    return _bounded(
        text, int, "a whole number of days", lambda v: v >= 0, "must be 0 (keep for ever) or more"
    )


def seconds(text: str) -> float:
    """A wait in seconds, more than 0 and finite."""
    return _bounded(
        text,
        float,
        "a number of seconds",
        lambda v: 0 < v < math.inf,
        "must be more than 0 seconds",
    )


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--bootstrap",
        default=env("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP)",
    )
    common.add_argument("--group", default=None, help="consumer group id")
    common.add_argument("--health-host", default=env("HEALTH_HOST", "127.0.0.1"))
    common.add_argument(
        "--health-port",
        type=int,
        default=int(env("HEALTH_PORT", "0")),
        help="port for /healthz and /metrics (0: any free port; -1: off)",
    )
    common.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"))

    parser = argparse.ArgumentParser(prog="lineage-hub consume")
    sub = parser.add_subparsers(dest="command", required=True)

    lineage = sub.add_parser("lineage", parents=[common], help="OpenLineage events -> Marquez")
    lineage.add_argument(
        "--marquez-url",
        default=env("MARQUEZ_URL", "http://127.0.0.1:5000"),
        help="Marquez API base URL (env MARQUEZ_URL)",
    )
    lineage.add_argument(
        "--lanes", type=at_least_one, default=8, help="concurrent POSTs per partition"
    )
    lineage.add_argument(
        "--dispatch-slice",
        type=at_least_one,
        default=LineageSettings.dispatch_slice,
        help="records of a fetch checked and queued between turns of the workers",
    )
    lineage.add_argument(
        "--max-uncommitted",
        type=at_least_one,
        default=LineageSettings.max_uncommitted,
        help="offsets a partition may have past its first unfinished one before it pauses",
    )
    lineage.add_argument("--topic", default=LINEAGE_TOPIC)

    clickhouse = argparse.ArgumentParser(add_help=False)
    clickhouse.add_argument(
        "--clickhouse-backend",
        choices=("chdb", "native"),
        default=env("CLICKHOUSE_BACKEND", "chdb"),
    )
    clickhouse.add_argument(
        "--chdb-path",
        default=env("CLICKHOUSE_CHDB_PATH", ""),
        help="chdb data folder (env CLICKHOUSE_CHDB_PATH)",
    )
    clickhouse.add_argument(
        "--clickhouse-url",
        default=env("CLICKHOUSE_URL", ""),
        help="clickhouse://user:password@host:9000/database (env CLICKHOUSE_URL)",
    )
    clickhouse.add_argument("--clickhouse-database", default=env("CLICKHOUSE_DATABASE", "otel"))
    clickhouse.add_argument(
        "--batch-rows", type=at_least_one, default=10_000, help="rows that end a batch"
    )
    clickhouse.add_argument(
        "--batch-wait", type=seconds, default=1.0, help="seconds that end a batch"
    )
    clickhouse.add_argument(
        "--ttl-days", type=days, default=0, help="days rows are kept (0: for ever)"
    )
    clickhouse.add_argument("--lineage-topic", default=LINEAGE_TOPIC)
    clickhouse.add_argument(
        "--warehouse-group",
        default=env("LINEAGEHUB_WAREHOUSE_GROUP", "lineagehub-warehouse"),
        help="consumer group of the lineage warehouse writer",
    )

    otel = sub.add_parser(
        "otel",
        parents=[common, clickhouse],
        help="OTLP spans and metrics (and, unless --no-lineage, OpenLineage) -> ClickHouse",
    )
    otel.add_argument("--spans-topic", default=SPANS_TOPIC)
    otel.add_argument("--metrics-topic", default=METRICS_TOPIC)
    otel.add_argument(
        "--lineage",
        action=argparse.BooleanOptionalAction,
        default=env("LINEAGEHUB_WAREHOUSE", "1") != "0",
        help="also write OpenLineage events into the lineage warehouse (env LINEAGEHUB_WAREHOUSE)",
    )
    sub.add_parser(
        "warehouse",
        parents=[common, clickhouse],
        help="OpenLineage events -> the ClickHouse lineage warehouse (alone)",
    )
    return parser


def _setup_otel_metrics(service: str) -> None:
    """Export our own counters over OTLP only when asked: OTEL_METRICS_EXPORTER=otlp.

    (An OTLP endpoint alone is not enough: the local stack points it at Jaeger,
    which takes traces only.) The protocol follows OTEL_EXPORTER_OTLP_PROTOCOL.
    """
    if os.environ.get("OTEL_METRICS_EXPORTER", "none").lower() != "otlp":
        return
    # Imported only when exporting: the exporters pull in grpc.
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource

    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    exporter: MetricExporter
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        exporter = GrpcExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpExporter,
        )

        exporter = HttpExporter()
    resource = Resource.create({"service.name": service})
    reader = PeriodicExportingMetricReader(exporter)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


async def serve(
    run: Callable[[asyncio.Event], Awaitable[None]],
    stats: Stats,
    health: Health,
    host: str,
    port: int,
    api: ApiHandler | None = None,
    sql: Runner | None = None,
) -> None:
    """Run a consumer with its health endpoint until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = (
        HealthServer(stats, health, host=host, port=port, api=api, sql=sql) if port >= 0 else None
    )
    if server is not None:
        await server.start()
    try:
        await run(stop)
    finally:
        if server is not None:
            await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_level)
    _setup_otel_metrics(f"lineagehub-consumer-{args.command}")
    health = Health()
    if args.command == "lineage":
        stats = Stats("lineage")
        lineage_settings = LineageSettings(
            bootstrap=args.bootstrap,
            marquez_url=args.marquez_url,
            group=args.group or "lineagehub-lineage",
            topic=args.topic,
            lanes=args.lanes,
            dispatch_slice=args.dispatch_slice,
            max_uncommitted=args.max_uncommitted,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        # Only this consumer traces itself (its store span continues the producer's
        # trace); the otel consumer never does: its spans would be about storing spans.
        try:
            recorder = selftrace.span_recorder(LINEAGE_SERVICE, args.bootstrap)
        except ValueError as exc:
            log.error(str(exc))
            return 2
        consumer = LineageConsumer(lineage_settings, stats=stats, health=health, tracer=recorder)
        try:
            asyncio.run(serve(consumer.run, stats, health, args.health_host, args.health_port))
        finally:
            if recorder is not None:
                recorder.shutdown()  # exports what the batch still holds
        return 0
    return _clickhouse_main(args, health)


def _batch_consumers(
    args: argparse.Namespace, backend: Backend, stats: Stats, health: Health
) -> list[OtelConsumer]:
    """The otel consumer and/or the lineage warehouse writer, sharing one backend."""
    from consumers.otel.consumer import DECODERS, Decoder, OtelConsumer, OtelSettings
    from consumers.warehouse.batch import decode_lineage_pending
    from consumers.warehouse.ddl import LINEAGE_SCHEMA

    common = {
        "bootstrap": args.bootstrap,
        "max_batch_rows": args.batch_rows,
        "max_batch_wait": args.batch_wait,
        "ttl_days": args.ttl_days,
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
    }
    out = []
    if args.command == "otel":
        settings = OtelSettings(
            group=args.group or "lineagehub-otel",
            topics=(args.spans_topic, args.metrics_topic),
            **common,
        )
        decoders: dict[str, Decoder] = {  # the batch decoders into Arrow
            args.spans_topic: DECODERS[SPANS_TOPIC],
            args.metrics_topic: DECODERS[METRICS_TOPIC],
        }
        out.append(OtelConsumer(settings, backend, stats=stats, health=health, decoders=decoders))
    if args.command == "warehouse" or args.lineage:
        group = args.warehouse_group if args.command == "otel" else args.group
        settings = OtelSettings(
            group=group or args.warehouse_group,
            topics=(args.lineage_topic,),
            client_id="lineagehub-warehouse",
            name="warehouse",
            **common,
        )
        from consumers.warehouse import native

        if native.decode_batch is None:
            log.warning(
                "lineage warehouse writer: lineagehub-native is not installed, so every event "
                "takes the Python rules (about twice the writer's CPU); install it with "
                "`pip install ./native`"
            )
        out.append(
            OtelConsumer(
                settings,
                backend,
                stats=stats,
                health=health,
                decoders={args.lineage_topic: decode_lineage_pending},
                schema=LINEAGE_SCHEMA,
            )
        )
    return out


def _clickhouse_main(args: argparse.Namespace, health: Health) -> int:
    from consumers.otel.backend import BackendError, ChdbBackend, open_backend
    from consumers.otel.trace_summary import trace_summary
    from consumers.warehouse.run_summary import run_summary

    stats = Stats(args.command)
    try:
        backend = open_backend(
            args.clickhouse_backend,
            chdb_path=args.chdb_path,
            url=args.clickhouse_url,
            database=args.clickhouse_database,
        )
    except ValueError as exc:
        log.error(str(exc))
        return 2
    consumers = _batch_consumers(args, backend, stats, health)
    try:
        recorder = _trace_warehouse(args, consumers)
    except ValueError as exc:
        log.error(str(exc))
        return 2

    async def run(stop: asyncio.Event) -> None:
        try:
            await asyncio.gather(*(c.run(stop) for c in consumers))
        finally:
            await backend.close()

    async def api(path: str) -> tuple[int, dict[str, object]]:
        """`GET /api/v1/traces/{traceId}` and `/api/v1/lineage/runs/{runId}`: what
        ClickHouse holds of a trace or of a run's lineage."""
        try:
            if path.startswith("traces/") and len(path) > len("traces/"):
                return 200, await trace_summary(backend, path.removeprefix("traces/"))
            if path.startswith("lineage/runs/") and len(path) > len("lineage/runs/"):
                found = await run_summary(backend, path.removeprefix("lineage/runs/"))
                if found is None:
                    return 404, {"error": "the lineage warehouse has no event of this run"}
                return 200, found
        except ValueError as exc:
            return 400, {"error": str(exc)}
        except BackendError as exc:
            return 503, {"error": f"ClickHouse: {exc}"}
        return 404, {"error": f"no such resource: {path}"}

    sql = backend.query_text if isinstance(backend, ChdbBackend) else None
    try:
        asyncio.run(serve(run, stats, health, args.health_host, args.health_port, api, sql))
    finally:
        if recorder is not None:
            recorder.shutdown()  # exports what the batch still holds
    return 0


def _trace_warehouse(
    args: argparse.Namespace, consumers: list[OtelConsumer]
) -> SpanRecorder | None:
    """The lineage warehouse writer's own spans: one per stored record that carries a
    trace context. The otel consumer beside it never traces: its spans would be about
    storing spans, each stored one making another."""
    writers = [c for c in consumers if c.s.name == "warehouse"]
    recorder = selftrace.span_recorder(WAREHOUSE_SERVICE, args.bootstrap) if writers else None
    for writer in writers:
        writer.tracer = recorder
    return recorder
