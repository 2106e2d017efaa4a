"""Operator latency and throughput on the local stack.

    .venv/bin/lineage-hub stack up
    .venv/bin/python bench/bench_operator.py [--runs 50] [--burst 50]

Prints, from a client-side watch on Jobs (so the API server's one-second
timestamps do not blur it):
- CR applied -> first Job created
- stage N Job Complete -> stage N+1 Job created
as median and p95 over `--runs` sequential runs; then `--burst` runs applied at
once: wall time until all Succeeded, and the operator's CPU seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from stack import supervisor
from stack.cli import stack_env
from stack.paths import REPO_ROOT
from stack.registry import select

GROUP, VERSION, PLURAL = "lineagehub.io", "v1alpha1", "pipelineruns"
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
ORDER = ("extract", "transform", "load")


class JobWatch(threading.Thread):
    """Records when each Job was first seen and first seen Complete."""

    def __init__(self, namespace: str) -> None:
        super().__init__(daemon=True)
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.complete: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        api = client.BatchV1Api()
        while not self.stop.is_set():
            stream = watch.Watch().stream  # type: ignore[no-untyped-call]
            for event in stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_job, self.namespace, timeout_seconds=5
            ):
                now = time.monotonic()
                job = event["object"]
                name = job.metadata.name
                self.added.setdefault(name, now)
                conditions = job.status.conditions or []
                if any(c.type == "Complete" and c.status == "True" for c in conditions):
                    self.complete.setdefault(name, now)


def manifest(namespace: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{namespace}/{name}.parquet"
    return doc


def phase(api: client.CustomObjectsApi, ns: str, name: str) -> str | None:
    obj: dict[str, Any] = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)  # type: ignore[assignment]
    value: str | None = (obj.get("status") or {}).get("phase")
    return value


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def operator_usage() -> tuple[float, int]:
    """(CPU seconds, RSS kB) of the operator process."""
    (piece,) = select(["operator"])
    proc = supervisor.running(piece)
    assert proc is not None, "the operator piece is not running: lineage-hub stack up"
    stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        if line.startswith("VmRSS")
    )
    return cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    os.environ.update(stack_env())
    config.load_kube_config()  # type: ignore[no-untyped-call]
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    jobs = JobWatch(ns)
    jobs.start()
    first, handoff = [], []
    try:
        for i in range(args.runs):
            name = f"seq-{i}"
            t0 = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest(ns, name))
            while phase(custom, ns, name) not in {"Succeeded", "Failed"}:
                time.sleep(0.2)
            time.sleep(0.3)
            names = [f"{name}-{s}" for s in ORDER]
            first.append(jobs.added[names[0]] - t0)
            for prev, nxt in itertools.pairwise(names):
                handoff.append(jobs.added[nxt] - jobs.complete[prev])
        print(f"sequential runs: {args.runs}")
        for label, values in (
            ("CR applied -> first Job", first),
            ("Job Complete -> next Job", handoff),
        ):
            median, p95 = statistics.median(values) * 1000, pct(values, 0.95) * 1000
            print(f"  {label:<26} median {median:7.0f} ms   p95 {p95:7.0f} ms   (n={len(values)})")
        cpu0, _ = operator_usage()
        t0 = time.monotonic()
        burst = [f"burst-{i}" for i in range(args.burst)]
        for name in burst:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest(ns, name))
        peak = 0
        pending = set(burst)
        while pending:
            pending = {n for n in pending if phase(custom, ns, n) not in {"Succeeded", "Failed"}}
            peak = max(peak, operator_usage()[1])
            time.sleep(1)
        wall = time.monotonic() - t0
        cpu1, _ = operator_usage()
        print(
            f"burst of {args.burst} runs: all finished in {wall:.1f} s; "
            f"operator CPU {cpu1 - cpu0:.1f} s, peak RSS {peak / 1024:.0f} MiB"
        )
    finally:
        jobs.stop.set()
        core.delete_namespace(ns)


if __name__ == "__main__":
    main()
