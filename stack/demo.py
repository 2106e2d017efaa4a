"""The main job on the local stack: apply the example run, wait for its verdicts, say
where to look.

`make demo` runs this after `lineage-hub stack up`. It applies the run, prints
`kubectl get pipelineruns` as it changes, and waits for three verdicts, each with
its own timeout: `Succeeded` (the run), then `TraceRecorded` and `LineageRecorded`
(the operator's checks of the stores once the run ended). It exits 0 only when all
three are True, and otherwise names each that is False or timed out, and why. A
second run deletes the previous run of the same name and applies it again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from stack import later, paths, progress
from stack.cli import stack_env
from stack.piece import http_ok
from stack.pieces import controlplane as cp
from stack.verdicts import Timeouts, Verdict, Watch, failure_text, table

EXAMPLE = paths.REPO_ROOT / "examples" / "pipelinerun.yaml"
POLL = 0.5


class Demo:
    """One run of one PipelineRun manifest, through kubectl as a person would."""

    def __init__(self, manifest: Path, namespace: str | None) -> None:
        self.manifest = manifest
        doc = yaml.safe_load(manifest.read_text())
        self.name: str = doc["metadata"]["name"]
        self.namespace = namespace or doc["metadata"].get("namespace") or "default"

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(cp.kcp_dir() / "kubectl"),
                f"--kubeconfig={cp.admin_kubeconfig()}",
                f"--namespace={self.namespace}",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )

    def apply(self) -> None:
        self.kubectl("delete", "pipelinerun", self.name, "--ignore-not-found", "--wait=true")
        self.kubectl("apply", "-f", str(self.manifest))

    def get(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            self.kubectl("get", "pipelinerun", self.name, "-o", "json").stdout
        )
        return data

    def row(self) -> list[str]:
        """`kubectl get pipelineruns NAME`: the header and the run's row."""
        return self.kubectl("get", "pipelineruns", self.name).stdout.strip().splitlines()


def watch(demo: Demo, timeouts: Timeouts) -> tuple[dict[str, Any], Watch]:
    """Print each change of the run's row; wait until every verdict is in or timed out."""
    reporter = progress.current()
    verdicts = Watch(timeouts, time.monotonic())
    last, run = "", demo.get()
    step = reporter.step(f"waiting for the verdicts of {demo.name}")
    while True:
        try:
            rows = demo.row()
            run = demo.get()
        except subprocess.CalledProcessError as err:
            # The API server restarting, say: the deadlines still run, the watch goes on.
            verdicts.observe({}, time.monotonic())
            if verdicts.done:
                break
            step.update(f"kubectl failed ({err.stderr.strip()[:120]}); retrying")
            time.sleep(POLL)
            continue
        changed = rows[-1].rsplit(maxsplit=1)[0]  # AGE alone is no change
        if changed != last:
            for text in rows if not last else rows[-1:]:
                reporter.say(text)
            last = changed
        verdicts.observe(run.get("status") or {}, time.monotonic())
        if verdicts.done:
            break
        awaited = verdicts.awaited()
        if awaited is not None:
            said = f" ({awaited.reason})" if awaited.reason else ""
            left = verdicts.left(awaited.kind, time.monotonic())
            step.update(f"{awaited.kind}{said}, {left:.0f} s left of its timeout")
        time.sleep(POLL)
    failed = verdicts.failures()
    step.done("all True" if not failed else f"{len(failed)} not True")
    return run, verdicts


def _jaeger_spans(env: dict[str, str], trace_id: str) -> int | None:
    try:
        reply = httpx.get(f"{env['JAEGER_QUERY_URL']}/api/traces/{trace_id}", timeout=5)
        return len(reply.json()["data"][0]["spans"]) if reply.status_code == 200 else None
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        return None


def _jaeger_line(env: dict[str, str], trace_id: str) -> str:
    """Where the trace is in Jaeger, with its spans, or that Jaeger is still being built
    in the background (`stack up --later jaeger`) and will read them from Kafka."""
    url = f"{env.get('JAEGER_QUERY_URL')}/api/traces/{trace_id}"
    spans = _jaeger_spans(env, trace_id)
    if spans is not None:
        return f"  Jaeger trace     {url}  ({spans} spans)"
    background = later.running()
    if background is not None and "jaeger" in background[1]:
        return (
            f"  Jaeger trace     {url}  (Jaeger is still being built in the background, "
            f"log {later.log_path()}; once up it reads this run's spans from Kafka)"
        )
    return f"  Jaeger trace     {url}  (no spans)"


def stage_duration(stage: dict[str, Any]) -> str:
    """A stage's duration from its millisecond times (`startTimePrecise`,
    `completionTimePrecise`: "20 ms", "1.25 s"); from the whole-second ones only when
    those are missing, where a stage of a few ms reads "< 1 s", not "0s"."""
    start, end = stage.get("startTimePrecise"), stage.get("completionTimePrecise")
    if start and end:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
    start, end = stage.get("startTime"), stage.get("completionTime")
    if not (start and end):
        return ""
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return "< 1 s" if seconds < 1 else f"≈ {seconds:.0f} s"


def _stages(status: dict[str, Any]) -> list[str]:
    lines = [f"  {'stage':<10}{'phase':<11}{'in':>7}{'out':>7}  duration"]
    for stage in status.get("stages") or []:
        took = stage_duration(stage)
        lines.append(
            f"  {stage['name']:<10}{stage.get('phase', '-'):<11}"
            f"{stage.get('recordsIn', '-')!s:>7}{stage.get('recordsOut', '-')!s:>7}  {took}"
        )
    return lines


def summary(
    demo: Demo, run: dict[str, Any], verdicts: Sequence[Verdict], env: dict[str, str]
) -> str:
    """The stages, the verdicts, and where to look (console, trace, ClickHouse, kubectl)."""
    status = run.get("status") or {}
    trace_id, run_id = status.get("traceId", ""), status.get("runId", "")
    out = [f"\n{demo.name}: {status.get('phase', 'no phase yet')}"]
    out.append(f"  run id   {run_id or '-'}\n  trace id {trace_id or '-'}\n")
    out += _stages(status)
    reporter = progress.current()
    out += ["", *table(verdicts, reporter.width() if reporter.tty else None)]
    out.append("\nWhere to look:")
    lineage = status.get("lineage") or {}
    if lineage.get("namespace") and lineage.get("job"):
        graph = f"/api/v1/lineage?nodeId=job:{lineage['namespace']}:{lineage['job']}&depth=2"
        out.append(f"  Lineage graph    {env.get('LINEAGEHUB_GATEWAY_URL', '')}{graph}")
    marquez = env.get("MARQUEZ_URL", "")
    if marquez and http_ok(f"{marquez}/api/v1/namespaces"):
        out.append(f"  Marquez run      {marquez}/api/v1/jobs/runs/{run_id}")
    out.append(f"  The whole story  lineage-hub describe {demo.name} -n {demo.namespace}")
    out.append(f'  Environment      eval "$({Path(sys.executable).parent}/lineage-hub stack env)"')
    gateway = env.get("LINEAGEHUB_GATEWAY_URL", "")
    if gateway and http_ok(f"{gateway}/api/v1/console/config"):
        out.append(f"  Console          {gateway}/console/run/{demo.namespace}/{demo.name}")
    else:
        out.append("  Console          the gateway is not up (`lineage-hub stack status`)")
    # The tables live in the consumers' database: an unqualified name is refused.
    database = env.get("CLICKHOUSE_DATABASE") or "otel"
    if trace_id:
        out.append(_jaeger_line(env, trace_id))
        out.append(
            f"  ClickHouse       SELECT SpanName, Duration FROM {database}.otel_traces "
            f"WHERE TraceId = '{trace_id}'  (POST to {env.get('CLICKHOUSE_HTTP_URL')})"
        )
    if run_id:
        out.append(
            f"  ClickHouse       SELECT * FROM {database}.lineage_runs WHERE RunId = '{run_id}'"
        )
    out.append(f"  Operator events  kubectl describe pipelinerun {demo.name} -n {demo.namespace}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.demo", description=__doc__)
    parser.add_argument("--file", type=Path, default=EXAMPLE, help="the PipelineRun to apply")
    parser.add_argument("--namespace", help="where to apply it (default: the manifest's)")
    defaults = Timeouts()
    for flag, default, what in (
        ("--run-timeout", defaults.succeeded, "from the apply to Succeeded"),
        ("--trace-timeout", defaults.trace, "from the run's end to TraceRecorded"),
        ("--lineage-timeout", defaults.lineage, "from the run's end to LineageRecorded"),
    ):
        parser.add_argument(flag, type=float, default=default, help=f"seconds {what}")
    args = parser.parse_args(argv)
    progress.use(progress.for_stdout())
    env = stack_env()
    os.environ.update(env)
    demo = Demo(args.file.resolve(), args.namespace)
    demo.apply()
    where = args.file.resolve()
    shown = where.relative_to(paths.REPO_ROOT) if where.is_relative_to(paths.REPO_ROOT) else where
    print(f"applied {shown} ({demo.namespace}/{demo.name})\n", flush=True)
    timeouts = Timeouts(args.run_timeout, args.trace_timeout, args.lineage_timeout)
    run, verdicts = watch(demo, timeouts)
    print(summary(demo, run, list(verdicts.verdicts.values()), env), flush=True)
    failed = verdicts.failures()
    if failed:
        print(f"\n{failure_text(demo.name, failed)}", file=sys.stderr, flush=True)
        return 1
    print(f"\ndemo: {demo.name} succeeded; its trace and lineage are recorded", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
