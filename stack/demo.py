"""The main job on the local stack: apply the example run, watch it, say where to look.

`make demo` runs this after `lineage-hub stack up`. A second run deletes the
previous example run and applies it again; the stack itself is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from stack import paths
from stack.cli import stack_env
from stack.piece import http_ok
from stack.pieces import controlplane as cp

EXAMPLE = paths.REPO_ROOT / "examples" / "pipelinerun.yaml"
NAME = "orders-daily"
TIMEOUT = 300.0
VERDICTS = ("LineageRecorded", "TraceRecorded")


def _kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cp.kcp_dir() / "kubectl"), f"--kubeconfig={cp.admin_kubeconfig()}", *args],
        capture_output=True,
        text=True,
        check=check,
    )


def _run() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_kubectl("get", "pipelinerun", NAME, "-o", "json").stdout)
    return data


def _verdicts_in(status: dict[str, Any]) -> bool:
    """Both store verdicts reached (LINEAGE and TRACE no longer Unknown)."""
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return all(conditions.get(k, "Unknown") != "Unknown" for k in VERDICTS)


def _watch() -> dict[str, Any]:
    """Print each change of `kubectl get pipelineruns` until the run finished and the
    operator has checked the stores (the LINEAGE and TRACE columns have their verdict)."""
    deadline = time.monotonic() + TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        table = _kubectl("get", "pipelineruns", NAME).stdout.strip()
        row = table.splitlines()[-1].rsplit(maxsplit=1)[0]  # AGE alone is no change
        if row != last:
            print(table.splitlines()[-1] if last else table, flush=True)
            last = row
        run = _run()
        status = run.get("status") or {}
        if status.get("phase") in {"Succeeded", "Failed", "Cancelled"} and _verdicts_in(status):
            return run
        time.sleep(0.5)
    raise SystemExit(
        f"demo: {NAME} did not finish within {TIMEOUT:.0f}s; "
        f"see `kubectl describe pipelinerun {NAME}`"
    )


def _jaeger_spans(env: dict[str, str], trace_id: str) -> int | None:
    try:
        reply = httpx.get(f"{env['JAEGER_QUERY_URL']}/api/traces/{trace_id}", timeout=5)
        return len(reply.json()["data"][0]["spans"]) if reply.status_code == 200 else None
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        return None


def _summary(run: dict[str, Any], env: dict[str, str]) -> None:
    status = run["status"]
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    print(f"\n{NAME}: {status['phase']} ({succeeded['reason']}: {succeeded['message']})")
    print(f"  run id   {status['runId']}\n  trace id {status['traceId']}")
    print(f"  {'stage':<10}{'phase':<11}{'in':>7}{'out':>7}  duration")
    for stage in status["stages"]:
        start, end = stage.get("startTime"), stage.get("completionTime")
        took = ""
        if start and end:
            from datetime import datetime

            seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            took = f"{seconds:.0f}s"
        print(
            f"  {stage['name']:<10}{stage['phase']:<11}{stage.get('recordsIn', '-')!s:>7}"
            f"{stage.get('recordsOut', '-')!s:>7}  {took}"
        )
    for kind in VERDICTS:
        cond = next((c for c in status["conditions"] if c["type"] == kind), None)
        if cond is not None:
            print(f"  {kind:<16} {cond['status']:<6} {cond['reason']}: {cond['message']}")
    spans = _jaeger_spans(env, status["traceId"])
    namespace, job = status["lineage"]["namespace"], status["lineage"]["job"]
    print("\nWhere to look:")
    gateway = env.get("LINEAGEHUB_GATEWAY_URL", "")
    if gateway and http_ok(f"{gateway}/api/v1/console/config"):
        namespace_of_run = run["metadata"]["namespace"]
        print(f"  Console          {gateway}/console/run/{namespace_of_run}/{NAME}")
    print(
        f"  Jaeger trace     {env['JAEGER_QUERY_URL']}/api/traces/{status['traceId']}"
        f"  ({spans} spans)"
    )
    marquez = env.get("MARQUEZ_URL", "")
    if marquez and http_ok(f"{marquez}/api/v1/namespaces"):
        print(f"  Marquez run      {marquez}/api/v1/jobs/runs/{status['runId']}")
    else:
        print(
            "  Marquez          not running on this stack (`lineage-hub stack status`);"
            " the lineage is in ClickHouse (below)"
        )
    print(
        "  ClickHouse       SELECT SpanName, Duration FROM otel_traces "
        f"WHERE TraceId = '{status['traceId']}'  (chdb at {env.get('CLICKHOUSE_CHDB_PATH')})"
    )
    print(
        f"  Lineage          SELECT * FROM lineage_runs WHERE RunId = '{status['runId']}'"
        f"  (curl --data-binary @- '{env.get('CLICKHOUSE_HTTP_URL')}')"
    )
    graph = f"/api/v1/lineage?nodeId=job:{namespace}:{job}&depth=2"
    print(f"  Lineage graph    {gateway or '<gateway>'}{graph}")
    print(f"  Operator events  kubectl describe pipelinerun {NAME}")
    print(f"  The whole story  lineage-hub describe {NAME}   (timeline, column lineage, quality)")
    print(f'  Environment      eval "$({sys.executable.rsplit("/", 1)[0]}/lineage-hub stack env)"')


def main() -> int:
    env = stack_env()
    os.environ.update(env)
    _kubectl("delete", "pipelinerun", NAME, "--ignore-not-found", "--wait=true")
    _kubectl("apply", "-f", str(EXAMPLE))
    print(
        f"applied {EXAMPLE.relative_to(paths.REPO_ROOT)}; watching kubectl get pipelineruns\n",
        flush=True,
    )
    run = _watch()
    _summary(run, env)
    return 0 if run["status"]["phase"] == "Succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
