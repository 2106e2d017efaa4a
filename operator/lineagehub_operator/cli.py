"""`lineage-hub operator`: run the kopf operator (wraps `kopf run`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import kopf

from lineagehub import selftrace


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lineage-hub operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only these namespaces"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)"
    )
    parser.add_argument(
        "--liveness", default="http://127.0.0.1:8080/healthz", help="liveness endpoint URL"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("LINEAGEHUB_OPERATOR_METRICS_PORT", "0")),
        help="serve Prometheus /metrics on this port (0: off; LINEAGEHUB_OPERATOR_METRICS_PORT)",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", help="where /metrics listens")
    parser.add_argument("--log-format", choices=["json", "plain", "full"], default="json")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    # Checked here, not in the startup handler: kopf retries a failing startup handler
    # forever (every 60 s), so a bad sampler would leave the operator up but idle.
    try:
        selftrace.check_config(os.environ)
    except ValueError as exc:
        print(f"lineage-hub operator: bad configuration: {exc}", file=sys.stderr)
        return 2

    import lineagehub_operator.handlers
    import lineagehub_operator.pipelines  # noqa: F401  (and the Pipelines' handlers)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    if args.metrics_port > 0:
        from lineagehub_operator import metrics

        metrics.serve(args.metrics_host, args.metrics_port)
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0
