"""The example run end to end on the local stack, and 20 runs at once.

    .venv/bin/lineage-hub stack up
    .venv/bin/python bench/bench_e2e.py [--runs 10] [--concurrent 20]

For each of `--runs` sequential runs of examples/pipelinerun.yaml: wall time from
apply to Succeeded, to TraceRecorded=True and to LineageRecorded reaching a verdict,
with a breakdown from the run's own spans (Jaeger) and status:
operator (apply -> first stage span), stage work (the stage spans),
between stages (Job hand-offs and pod starts), telemetry (Succeeded -> the trace
verified in ClickHouse and Jaeger: publish, consume, store). Then `--concurrent`
runs applied at once: throughput and the slowest run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import time
import uuid
from typing import Any

import httpx
import yaml

from stack.cli import stack_env
from stack.paths import REPO_ROOT

EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def apply(ns: str, name: str) -> float:
    doc: dict[str, Any] = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{ns}/{name}.parquet"
    kubectl("apply", "-f", "-", stdin=json.dumps(doc))
    return time.monotonic()


def status(ns: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(kubectl("get", "pipelinerun", name, "-n", ns, "-o", "json"))
    return body.get("status") or {}


def verdict(st: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in st.get("conditions") or [] if c["type"] == kind), None)


def follow(ns: str, name: str, t0: float, limit: float = 300) -> dict[str, float]:
    """Seconds from t0 to each milestone of one run."""
    marks: dict[str, float] = {}
    while time.monotonic() - t0 < limit:
        st = status(ns, name)
        now = time.monotonic() - t0
        if st.get("phase") in {"Succeeded", "Failed"}:
            marks.setdefault("finished", now)
        if verdict(st, "TraceRecorded") == "True":
            marks.setdefault("trace", now)
        lineage = verdict(st, "LineageRecorded")
        if lineage in {"True", "False"}:
            marks.setdefault("lineage", now)
            marks["lineage_true"] = float(lineage == "True")
        if {"finished", "trace", "lineage"} <= marks.keys():
            return marks
        time.sleep(0.2)
    raise SystemExit(f"{ns}/{name} did not reach its verdicts within {limit:.0f}s: {marks}")


def breakdown(env: dict[str, str], trace_id: str) -> dict[str, float]:
    spans = httpx.get(f"{env['JAEGER_QUERY_URL']}/api/traces/{trace_id}", timeout=10).json()
    spans = spans["data"][0]["spans"]
    root = next(s for s in spans if s["operationName"].startswith("PipelineRun "))
    stages = sorted(
        (s for s in spans if s["operationName"].startswith("stage ")), key=lambda s: s["startTime"]
    )
    work = sum(s["duration"] for s in stages) / 1e6
    first = (stages[0]["startTime"] - root["startTime"]) / 1e6
    total = root["duration"] / 1e6
    return {"operator": first, "stage work": work, "between stages": total - first - work}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    env = stack_env()
    os.environ.update(env)
    ns = f"bench-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    try:
        rows: list[dict[str, float]] = []
        for i in range(args.runs):
            name = f"seq-{i}"
            marks = follow(ns, name, apply(ns, name))
            parts = breakdown(env, status(ns, name)["traceId"])
            parts["telemetry"] = marks["trace"] - marks["finished"]
            rows.append({**marks, **parts})
        print(f"example run, {args.runs} times in a row (median seconds):")
        for key, label in (
            ("finished", "apply -> Succeeded"),
            ("trace", "apply -> TraceRecorded=True"),
            ("lineage", "apply -> LineageRecorded verdict"),
            ("operator", "  operator (apply -> extract span)"),
            ("stage work", "  stage work (3 stage spans)"),
            ("between stages", "  between stages (hand-off + pod start)"),
            ("telemetry", "  publish + consume + store (Succeeded -> trace verified)"),
        ):
            print(f"  {label:<58} {statistics.median(r[key] for r in rows):7.2f}")
        lineage_true = sum(r["lineage_true"] for r in rows)
        print(f"  LineageRecorded=True in {lineage_true:.0f} of {args.runs} runs")
        names = [f"burst-{i}" for i in range(args.concurrent)]
        t0 = time.monotonic()
        starts = {n: apply(ns, n) for n in names}
        done: dict[str, float] = {}
        while len(done) < len(names):
            for n in names:
                if n not in done and status(ns, n).get("phase") in {"Succeeded", "Failed"}:
                    done[n] = time.monotonic()
            time.sleep(0.5)
        wall = max(done.values()) - t0
        slowest = max(done[n] - starts[n] for n in names)
        print(
            f"{args.concurrent} runs at once: all done in {wall:.1f} s "
            f"({args.concurrent / wall * 60:.1f} runs/min), slowest run {slowest:.1f} s"
        )
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


if __name__ == "__main__":
    main()
