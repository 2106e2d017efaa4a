"""`lineage-hub operator`: run the kopf operator (wraps `kopf run`)."""

from __future__ import annotations

import argparse
import asyncio

import kopf


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
    parser.add_argument("--log-format", choices=["json", "plain", "full"], default="json")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    import lineagehub_operator.handlers
    import lineagehub_operator.pipelines  # noqa: F401  (and the Pipelines' handlers)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0
