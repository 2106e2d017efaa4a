"""`lineage-hub consume lineage|otel`: run one consumer until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from consumers import logs
from consumers.health import ApiHandler, Health, HealthServer
from consumers.lineage.consumer import LineageConsumer, LineageSettings
from consumers.otel.backend import BackendError, open_backend
from consumers.otel.consumer import Decoder, OtelConsumer, OtelSettings
from consumers.otel.decode import decode_metrics, decode_trace_tables
from consumers.otel.trace_summary import trace_summary
from consumers.stats import Stats
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC

log = logging.getLogger(__name__)


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
    lineage.add_argument("--lanes", type=int, default=8, help="concurrent POSTs per partition")
    lineage.add_argument("--topic", default=LINEAGE_TOPIC)

    otel = sub.add_parser("otel", parents=[common], help="OTLP spans and metrics -> ClickHouse")
    otel.add_argument(
        "--clickhouse-backend",
        choices=("chdb", "native"),
        default=env("CLICKHOUSE_BACKEND", "chdb"),
    )
    otel.add_argument(
        "--chdb-path",
        default=env("CLICKHOUSE_CHDB_PATH", ""),
        help="chdb data folder (env CLICKHOUSE_CHDB_PATH)",
    )
    otel.add_argument(
        "--clickhouse-url",
        default=env("CLICKHOUSE_URL", ""),
        help="clickhouse://user:password@host:9000/database (env CLICKHOUSE_URL)",
    )
    otel.add_argument("--clickhouse-database", default=env("CLICKHOUSE_DATABASE", "otel"))
    otel.add_argument("--batch-rows", type=int, default=10_000)
    otel.add_argument("--batch-wait", type=float, default=1.0, help="seconds")
    otel.add_argument("--ttl-days", type=int, default=0)
    otel.add_argument("--spans-topic", default=SPANS_TOPIC)
    otel.add_argument("--metrics-topic", default=METRICS_TOPIC)
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
) -> None:
    """Run a consumer with its health endpoint until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = HealthServer(stats, health, host=host, port=port, api=api) if port >= 0 else None
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
        )
        consumer = LineageConsumer(lineage_settings, stats=stats, health=health)
        asyncio.run(serve(consumer.run, stats, health, args.health_host, args.health_port))
        return 0
    stats = Stats("otel")
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
    otel_settings = OtelSettings(
        bootstrap=args.bootstrap,
        group=args.group or "lineagehub-otel",
        max_batch_rows=args.batch_rows,
        max_batch_wait=args.batch_wait,
        ttl_days=args.ttl_days,
        topics=(args.spans_topic, args.metrics_topic),
    )
    decoders: dict[str, Decoder] = {
        args.spans_topic: decode_trace_tables,
        args.metrics_topic: decode_metrics,
    }
    otel_consumer = OtelConsumer(
        otel_settings, backend, stats=stats, health=health, decoders=decoders
    )

    async def run(stop: asyncio.Event) -> None:
        try:
            await otel_consumer.run(stop)
        finally:
            await backend.close()

    async def api(path: str) -> tuple[int, dict[str, object]]:
        """`GET /api/v1/traces/{traceId}`: what ClickHouse holds of a trace."""
        kind, _, trace_id = path.partition("/")
        if kind != "traces" or not trace_id:
            return 404, {"error": f"no such resource: {path}"}
        try:
            return 200, await trace_summary(backend, trace_id)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        except BackendError as exc:
            return 503, {"error": f"ClickHouse: {exc}"}

    asyncio.run(serve(run, stats, health, args.health_host, args.health_port, api))
    return 0
