"""`lineage-hub gateway`: serve the HTTP gateway with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gateway import config, logs, promtext
from lineagehub import selftrace

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lineage-hub gateway",
        description=(
            "The HTTP gateway: OpenLineage ingestion onto Kafka, PipelineRuns over HTTP, "
            "metrics and health. Configured from the environment (KAFKA_BOOTSTRAP, "
            "KUBECONFIG, CLICKHOUSE_URL, MARQUEZ_URL, LINEAGEHUB_GATEWAY_TOKENS[_FILE], "
            "LINEAGEHUB_GATEWAY_*; see gateway/README.md)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--workers",
        type=_worker_count,
        default=os.environ.get("LINEAGEHUB_GATEWAY_WORKERS") or "1",
        help=(
            "processes serving the port (default 1, or LINEAGEHUB_GATEWAY_WORKERS): one "
            "per core on a VM; in Kubernetes prefer replicas (each worker keeps its own "
            "rate limits; /metrics sums every worker's counts through "
            "PROMETHEUS_MULTIPROC_DIR, a temporary directory unless set)"
        ),
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="read the configuration, print a summary and exit",
    )
    return p


def _worker_count(text: str) -> int:
    """`--workers` / LINEAGEHUB_GATEWAY_WORKERS: a whole number of processes, ≥ 1."""
    if text.isascii() and text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a number of worker processes: give a whole number ≥ 1 "
        "(--workers N or LINEAGEHUB_GATEWAY_WORKERS=N)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.log_level)
    try:
        settings = config.from_env()
        selftrace.check_config(os.environ)
    except (ValueError, OSError) as exc:
        print(f"lineage-hub gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    if not len(settings.tokens) and not settings.tokens.anonymous:
        log.warning(
            "no tokens configured: every authenticated endpoint answers 401 "
            "(set LINEAGEHUB_GATEWAY_TOKENS or LINEAGEHUB_GATEWAY_TOKENS_FILE)"
        )
    if args.check_config:
        print(
            f"tokens={len(settings.tokens)} anonymous={settings.tokens.anonymous} "
            f"kafka={settings.kafka_bootstrap or '-'} kubeconfig={settings.kubeconfig or '-'} "
            f"clickhouse={'url' if settings.clickhouse_url else '-'} "
            f"marquez={settings.marquez_url or '-'} cors={list(settings.cors_origins)}"
        )
        return 0
    import uvicorn

    from gateway.app import LOG_LEVEL_ENV, served_app
    from gateway.http_protocol import OneWriteHttpToolsProtocol

    common: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "http": OneWriteHttpToolsProtocol,  # a response's head and body in one send
        "log_config": None,
        "access_log": False,  # ours is structured, with the request id
        "proxy_headers": False,
    }
    if args.workers > 1:
        # Each worker process builds its own app (and producer) from the environment;
        # their metrics meet in one directory, so every worker's /metrics has the sums.
        os.environ[LOG_LEVEL_ENV] = args.log_level
        with promtext.shared_by_workers():
            uvicorn.run("gateway.app:app_from_env", factory=True, workers=args.workers, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(served_app(settings), **common)  # type: ignore[arg-type]
    return 0
