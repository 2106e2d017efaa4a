"""The example run end to end on the local stack, where each millisecond goes, and many
runs at once.

    .venv/bin/lineage-hub stack up
    flock /tmp/lh-stack.lock .venv/bin/python bench/bench_e2e.py [--runs 10] \\
        [--baseline REF] [--concurrent 20] [--concurrent 50]

For each of `--runs` sequential runs of examples/pipelinerun.yaml (created through the
API, the clock starting just before the create call): seconds to Succeeded, to
TraceRecorded=True and to a LineageRecorded verdict (median and p95), then the gaps of
each stage, median over the runs:

  operator        the create (first stage), or the previous stage's Pod Succeeded,
                  -> this Job created (the operator moves on at the pod's success)
  job controller  Job created -> its Pod created
  scheduler       Pod created -> Pod bound to the node
  kubelet start   Pod bound -> the container process started
  python start    process started -> the stage span starts (imports, config)
  stage work      the stage span
  publish + exit  stage span ended -> process exited (lineage, spans, metrics to Kafka)
  kubelet status  process exited -> Pod Succeeded seen
and after the last stage, its Pod Succeeded -> the run Succeeded. Off the path, for
reference: Pod Succeeded -> Job Complete (the Job controller's batched sync, which no
longer holds the run up). Object times come from
watches in this process (the API server's timestamps have one-second resolution); the
process start and exit from the kubelet's record of each container (`exit.json`:
finishedAt and ranFor); the spans from Jaeger. The gaps add up to apply -> Succeeded,
give or take the watches' own delivery.

How often the operator wrote each run's status: the writes that changed it, as the
run's watch saw them, up to Succeeded and up to both verdicts, and the PATCH requests
to `pipelineruns/status` the API server counted meanwhile (its /metrics: every run's,
so a figure for this run only while nothing else runs). With `--baseline REF` the same
runs are made first with the operator of git revision REF (its `operator/` and
`lineagehub/` exported to a temporary folder and imported first; the stack's operator
is stopped meanwhile), and both are printed with the ratio.

Then each `--concurrent N`: N runs created at once; all must reach a terminal phase
within `--limit` seconds (any that does not is reported stuck); prints runs/min, the
median and slowest run, the most stage pods running at once, and what made runs wait:
the operator's queue (reason Queued) or the scheduler (a pod created but not yet bound).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, config, watch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stack import supervisor
from stack.cli import stack_env
from stack.paths import REPO_ROOT
from stack.registry import select
from tests.operator_process import operator_process

GROUP, VERSION, PLURAL = "lineagehub.io", "v1alpha1", "pipelineruns"
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
STAGES = ("extract", "transform", "load")
TERMINAL = {"Succeeded", "Failed", "Cancelled"}
GAPS = (
    "operator",
    "job controller",
    "scheduler",
    "kubelet start",
    "python start",
    "stage work",
    "publish + exit",
    "kubelet status",
)


class Seen:
    """First time (epoch seconds, this machine's clock) each object reached each mark."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[tuple[str, str], float] = {}
        self.pod_of_job: dict[str, str] = {}
        self.queued: set[str] = set()
        self.phase: dict[str, str] = {}
        self.trace_id: dict[str, str] = {}
        self.run_id: dict[str, str] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.writes: dict[str, int] = {}  # status writes seen (a changed status each)
        self.writes_to_end: dict[str, int] = {}  # of which up to the terminal phase

    def mark(self, name: str, what: str, when: float) -> None:
        with self.lock:
            self.at.setdefault((name, what), when)

    def get(self, name: str, what: str) -> float | None:
        with self.lock:
            return self.at.get((name, what))


def _stream(lister: Callable[..., Any], *args: Any) -> Iterator[dict[str, Any]]:
    while True:
        yield from watch.Watch().stream(lister, *args, timeout_seconds=30)  # type: ignore[no-untyped-call]


def watch_jobs(ns: str, seen: Seen) -> None:
    for event in _stream(client.BatchV1Api().list_namespaced_job, ns):
        now, job = time.time(), event["object"]
        seen.mark(job.metadata.name, "job added", now)
        conditions = job.status.conditions or []
        if any(c.type == "Complete" and c.status == "True" for c in conditions):
            seen.mark(job.metadata.name, "job complete", now)


def watch_pods(ns: str, seen: Seen) -> None:
    for event in _stream(client.CoreV1Api().list_namespaced_pod, ns):
        now, pod = time.time(), event["object"]
        job = (pod.metadata.labels or {}).get("job-name")
        if not job:
            continue
        with seen.lock:
            seen.pod_of_job[job] = pod.metadata.name
        seen.mark(job, "pod added", now)
        if pod.spec.node_name:
            seen.mark(job, "pod bound", now)
        if pod.status.phase == "Succeeded":
            seen.mark(job, "pod succeeded", now)


def watch_runs(ns: str, seen: Seen) -> None:
    lister = client.CustomObjectsApi().list_namespaced_custom_object
    for event in _stream(lister, GROUP, VERSION, ns, PLURAL):
        now, run = time.time(), event["object"]
        name, status = run["metadata"]["name"], run.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        with seen.lock:
            if status != seen.status.get(name, {}):
                seen.status[name] = status
                seen.writes[name] = seen.writes.get(name, 0) + 1
            if status.get("phase") in TERMINAL:
                seen.writes_to_end.setdefault(name, seen.writes[name])
            seen.phase[name] = status.get("phase") or ""
            if status.get("traceId"):
                seen.trace_id[name] = status["traceId"]
            if status.get("runId"):
                seen.run_id[name] = status["runId"]
            if conditions.get("Succeeded", {}).get("reason") == "Queued":
                seen.queued.add(name)
        if status.get("phase") in TERMINAL:
            seen.mark(name, "finished", now)
        if conditions.get("TraceRecorded", {}).get("status") == "True":
            seen.mark(name, "trace", now)
        if conditions.get("LineageRecorded", {}).get("status") in {"True", "False"}:
            seen.mark(name, "lineage", now)


def _holds(url: str, want: Callable[[dict[str, Any]], bool]) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        reply = httpx.get(url, timeout=5)
        return reply.status_code == 200 and want(reply.json())
    return False


def watch_stores(seen: Seen, name: str, env: dict[str, str]) -> None:
    """Marks when each store first holds the finished run `name` whole (what the operator
    checks for), polling every 0.1 s until the operator's verdicts are in: `<store> holds`,
    for the trace in ClickHouse and Jaeger and the lineage in the warehouse and Marquez."""
    with seen.lock:
        trace_id, run_id = seen.trace_id[name], seen.run_id[name]
    spans = {f"PipelineRun {name}", *(f"stage {s}" for s in STAGES)}
    store, jaeger = env["LINEAGEHUB_TRACE_STORE_URL"], env["JAEGER_QUERY_URL"]
    checks: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
        "clickhouse trace": (
            f"{store}/api/v1/traces/{trace_id}",
            lambda b: spans <= set(b.get("spanNames") or []),
        ),
        "jaeger trace": (
            f"{jaeger}/api/traces/{trace_id}",
            lambda b: (
                spans
                <= {s.get("operationName") for t in b.get("data") or [] for s in t.get("spans", [])}
            ),
        ),
        "warehouse lineage": (
            f"{store}/api/v1/lineage/runs/{run_id}",
            lambda b: (
                b.get("state") == "COMPLETE"
                and sum(c.get("state") == "COMPLETE" for c in b.get("children") or [])
                >= len(STAGES)
            ),
        ),
        "marquez lineage": (
            f"{env['MARQUEZ_URL']}/api/v1/jobs/runs/{run_id}",
            lambda b: b.get("state") == "COMPLETED",
        ),
    }
    while checks and not (seen.get(name, "trace") and seen.get(name, "lineage")):
        for key, (url, want) in list(checks.items()):
            if _holds(url, want):
                seen.mark(name, f"{key} holds", time.time())
                del checks[key]
        time.sleep(0.1)


def create(api: client.CustomObjectsApi, ns: str, name: str) -> float:
    doc: dict[str, Any] = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{ns}/{name}.parquet"
    doc["spec"].pop("ttlSecondsAfterFinished", None)
    t0 = time.time()
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc)
    return t0


def wait_for(seen: Seen, name: str, marks: tuple[str, ...], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not all(seen.get(name, m) for m in marks):
        if time.monotonic() > deadline:
            missing = [m for m in marks if not seen.get(name, m)]
            raise SystemExit(f"{name}: no {missing} within {limit:.0f} s")
        time.sleep(0.05)


def exit_record(state: Path, ns: str, pod: str) -> dict[str, Any]:
    """The kubelet's record (`exit.json`) of the pod's last stage process."""
    (folder,) = (state / "data" / "kubelet" / "pods").glob(f"{ns}_{pod}_*")
    attempts = sorted(
        (p for p in (folder / "containers" / "stage").iterdir() if p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    info: dict[str, Any] = json.loads((attempts[-1] / "exit.json").read_text())
    return info


def container_times(state: Path, ns: str, pod: str) -> tuple[float, float]:
    """(start, exit) epoch seconds of the pod's stage process, from the kubelet's record."""
    info = exit_record(state, ns, pod)
    finished = datetime.fromisoformat(info["finishedAt"][:26].rstrip("Z") + "+00:00")
    exited = finished.timestamp()
    return exited - float(info["ranFor"]), exited


def stage_spans(jaeger: str, trace_id: str) -> dict[str, tuple[float, float]]:
    """{stage: (start, end)} epoch seconds of each stage span of a trace."""
    body = httpx.get(f"{jaeger}/api/traces/{trace_id}", timeout=10).json()
    spans = {}
    for span in body["data"][0]["spans"]:
        op = span["operationName"]
        if op.startswith("stage "):
            start = span["startTime"] / 1e6
            spans[op.removeprefix("stage ")] = (start, start + span["duration"] / 1e6)
    return spans


def gaps(seen: Seen, state: Path, jaeger: str, ns: str, name: str, t0: float) -> dict[str, float]:
    """Milliseconds of each gap of each stage of one finished run (`<stage> <gap>`)."""
    spans: dict[str, tuple[float, float]] = {}
    for _ in range(50):  # Jaeger indexes spans a little after TraceRecorded
        spans = stage_spans(jaeger, seen.trace_id[name])
        if len(spans) == len(STAGES):
            break
        time.sleep(0.2)
    out: dict[str, float] = {}
    before = t0
    for stage in STAGES:
        job = f"{name}-{stage}"
        start, exited = container_times(state, ns, seen.pod_of_job[job])
        span_start, span_end = spans[stage]
        at = {m: seen.get(job, m) or 0.0 for m in ("job added", "pod added", "pod bound")}
        done = {m: seen.get(job, m) or 0.0 for m in ("pod succeeded", "job complete")}
        points = (
            before,
            at["job added"],
            at["pod added"],
            at["pod bound"],
            start,
            span_start,
            span_end,
            exited,
            done["pod succeeded"],
        )
        for label, (a, b) in zip(GAPS, itertools.pairwise(points), strict=True):
            out[f"{stage} {label}"] = (b - a) * 1000
        out[f"{stage} job complete"] = (done["job complete"] - done["pod succeeded"]) * 1000
        cpu = exit_record(state, ns, seen.pod_of_job[job]).get("cpuSeconds")
        out[f"{stage} cpu"] = float(cpu) * 1000 if cpu is not None else float("nan")
        before = done["pod succeeded"]
    out["run succeeded"] = ((seen.get(name, "finished") or 0.0) - before) * 1000
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


STORES = ("clickhouse trace", "jaeger trace", "warehouse lineage", "marquez lineage")
#: The operator's Prometheus metrics (`stack status`: its second port).
OPERATOR_METRICS = "http://127.0.0.1:18084/metrics"
COUNTERS = {
    "lineagehub_operator_reconcile_seconds_count": "passes",
    "lineagehub_operator_store_checks_total": "checks",
}


def operator_counts() -> dict[str, float]:
    """The operator's reconcile passes and store checks so far (NaN when not exported)."""
    out = dict.fromkeys(COUNTERS.values(), float("nan"))
    with contextlib.suppress(httpx.HTTPError):
        for line in httpx.get(OPERATOR_METRICS, timeout=5).text.splitlines():
            name, _, value = line.partition(" ")
            if name in COUNTERS:
                out[COUNTERS[name]] = float(value)
    return out


def status_patches() -> float:
    """PATCH requests to `pipelineruns/status` the API server has answered so far, every
    run's (its /metrics); NaN when it cannot be read."""
    try:
        api = client.ApiClient()
        reply = api.call_api("GET", f"{api.configuration.host}/metrics")
        text = bytes(reply.read()).decode()  # type: ignore[no-untyped-call]
    except Exception:  # any failure: the figure is not available
        return float("nan")
    wanted = ('verb="PATCH"', 'resource="pipelineruns"', 'subresource="status"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{") and all(w in line for w in wanted)
    )


def sequential(
    api: client.CustomObjectsApi,
    seen: Seen,
    ns: str,
    runs: int,
    state: Path,
    env: dict[str, str],
    prefix: str = "seq",
) -> list[dict[str, float]]:
    jaeger = env["JAEGER_QUERY_URL"]
    rows: list[dict[str, float]] = []
    for i in range(runs):
        name = f"{prefix}-{i}"
        at_create = operator_counts()
        patches = status_patches()
        t0 = create(api, ns, name)
        wait_for(seen, name, ("finished",), 300)
        at_end = operator_counts()
        stores = threading.Thread(target=watch_stores, args=(seen, name, env), daemon=True)
        stores.start()
        wait_for(seen, name, ("trace", "lineage"), 300)
        at_verdict = operator_counts()
        patches = status_patches() - patches
        stores.join()
        for stage in STAGES:  # off the path, but measured: the Job controller's sync
            wait_for(seen, f"{name}-{stage}", ("job complete",), 60)
        row = {m: (seen.get(name, m) or 0.0) - t0 for m in ("finished", "trace", "lineage")}
        for key in STORES:
            held = seen.get(name, f"{key} holds")
            row[key] = held - t0 if held else float("nan")
        row["passes"] = at_verdict["passes"] - at_end["passes"]
        row["checks"] = at_verdict["checks"] - at_create["checks"]  # all after the end
        with seen.lock:
            row["writes to end"] = float(seen.writes_to_end[name])
            row["writes"] = float(seen.writes[name])
        row["patches"] = patches
        row.update(gaps(seen, state, jaeger, ns, name, t0))
        rows.append(row)
    print(f"example run, {runs} times in a row (seconds: median / p95):")
    for key, label in (
        ("finished", "create -> Succeeded"),
        ("trace", "create -> TraceRecorded=True"),
        ("lineage", "create -> LineageRecorded verdict"),
    ):
        values = [r[key] for r in rows]
        print(f"  {label:<36} {statistics.median(values):6.2f} / {pct(values, 0.95):6.2f}")
    print("  when each store first held the run whole (polled every 0.1 s):")
    for key in STORES:
        values = [r[key] for r in rows if r[key] == r[key]]  # nan: never held
        if not values:
            print(f"    create -> {key:<25}  never (not configured or down)")
            continue
        mid, p95 = statistics.median(values), pct(values, 0.95)
        print(f"    create -> {key:<25} {mid:6.2f} / {p95:6.2f}")
    passes, checks = ([r[k] for r in rows] for k in ("passes", "checks"))
    print(
        f"  store checks per run: {statistics.median(checks):.0f} (median; nan: not exported); "
        f"reconcile passes from Succeeded seen to both verdicts: {statistics.median(passes):.0f}"
    )
    print(
        "  status writes per run (median / max): "
        + "; ".join(
            f"{label} {statistics.median(r[k] for r in rows):.0f} / {max(r[k] for r in rows):.0f}"
            for k, label in WRITES
        )
    )
    print("where the time goes (ms, median over the runs):")
    print(f"  {'gap':<16}" + "".join(f"{s:>10}" for s in STAGES) + f"{'sum':>10}")
    total = 0.0
    for gap in GAPS:
        med = [statistics.median(r[f"{s} {gap}"] for r in rows) for s in STAGES]
        total += sum(med)
        print(f"  {gap:<16}" + "".join(f"{v:>10.0f}" for v in med) + f"{sum(med):>10.0f}")
    last = statistics.median(r["run succeeded"] for r in rows)
    print(f"  {'load Pod Succeeded -> run Succeeded':<46}{last:>10.0f}")
    print(f"  {'sum of the medians':<46}{total + last:>10.0f}")
    cpu = [statistics.median(r[f"{s} cpu"] for r in rows) for s in STAGES]
    print(f"  {'CPU of the stage process':<16}" + "".join(f"{v:>10.0f}" for v in cpu))
    off = [statistics.median(r[f"{s} job complete"] for r in rows) for s in STAGES]
    print("  off the path: Pod Succeeded -> Job Complete  " + " / ".join(f"{v:.0f}" for v in off))
    return rows


WRITES = (
    ("writes to end", "to Succeeded"),
    ("writes", "to both verdicts"),
    ("patches", "API server PATCH requests to the status"),
)


def export_source(ref: str, into: Path) -> list[Path]:
    """The operator's and the shared package's sources at git revision `ref`, written
    under `into` (git archive: the work tree and the index are not touched); the paths
    to import them from, first."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", ref, "operator", "lineagehub"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return [into / "operator", into]


def baseline(
    ref: str,
    api: client.CustomObjectsApi,
    seen: Seen,
    ns: str,
    runs: int,
    state: Path,
    env: dict[str, str],
) -> list[dict[str, float]]:
    """The sequential runs made by the operator of `ref`, the stack's stopped meanwhile."""
    (piece,) = select(["operator"])
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        source = export_source(ref, Path(tmp))
        supervisor.stop(piece)
        try:
            with operator_process([ns], Path(tmp) / "operator.log", source=source):
                print(f"baseline: the operator of {ref}")
                return sequential(api, seen, ns, runs, state, env, prefix="base")
        finally:
            supervisor.up([piece])


def compare(base: list[dict[str, float]], ours: list[dict[str, float]]) -> None:
    """Each figure's median, the baseline's beside ours, and ours / baseline."""
    print("baseline -> this checkout (median; ratio ours / baseline):")
    figures = [*WRITES, ("finished", "create -> Succeeded (s)")]
    for key, label in figures:
        before = statistics.median(r[key] for r in base)
        after = statistics.median(r[key] for r in ours)
        ratio = after / before if before else float("nan")
        print(f"  {label:<42} {before:8.2f} -> {after:8.2f}  ({ratio:.2f})")


TICK = os.sysconf("SC_CLK_TCK")


def cpu_sample(state: Path) -> dict[str, float]:
    """CPU seconds used so far: the machine's (all cores, busy time) and each stack
    piece's own (a piece's children, such as the kubelet's container shims, not counted)."""
    out: dict[str, float] = {}
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = [int(v) for v in fields[:8]]
    out["machine"] = (sum(busy) - busy[3] - busy[4]) / TICK  # less idle and iowait
    for pid_file in sorted((state / "pids").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = json.loads(pid_file.read_text())["pid"]
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid_file.stem] = (int(stat[11]) + int(stat[12])) / TICK
    return out


def print_cpu(before: dict[str, float], after: dict[str, float], wall: float) -> None:
    used = {k: after[k] - before[k] for k in after if k in before}
    machine = used.pop("machine")
    pieces = sorted(used.items(), key=lambda kv: -kv[1])
    rest = machine - sum(used.values())
    print(
        f"  CPU during the burst: {machine:.1f} s of {wall * (os.cpu_count() or 1):.1f} s "
        f"available ({machine / wall:.2f} cores busy)"
    )
    print(
        "    "
        + ", ".join(f"{k} {v:.1f}" for k, v in pieces if v >= 0.05)
        + f", stage processes and the rest {rest:.1f}"
    )


def failed_scheduling(ns: str, runs: set[str]) -> tuple[int, str] | None:
    """(pods of `runs` the scheduler could not place at first, one of its messages), from
    the namespace's FailedScheduling events; None when there were none."""
    events = client.CoreV1Api().list_namespaced_event(ns, field_selector="reason=FailedScheduling")
    pods = {
        e.involved_object.name
        for e in events.items
        if any(str(e.involved_object.name).startswith(f"{r}-") for r in runs)
    }
    if not pods:
        return None
    return len(pods), str(events.items[-1].message or "").strip()


def concurrent(
    api: client.CustomObjectsApi, seen: Seen, ns: str, n: int, limit: float, state: Path
) -> None:
    names = [f"burst{n}-{i}" for i in range(n)]
    cpu_before = cpu_sample(state)
    starts = {name: create(api, ns, name) for name in names}
    t0 = min(starts.values())
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not all(seen.get(m, "finished") for m in names):
        time.sleep(0.2)
    cpu_after, cpu_wall = cpu_sample(state), time.time() - t0
    done = {m: seen.get(m, "finished") for m in names}
    finished = [m for m in names if done[m]]
    stuck = [m for m in names if not done[m]]
    wall = max((done[m] or 0.0) for m in finished) - t0 if finished else limit
    each = [(done[m] or 0.0) - starts[m] for m in finished]
    phases: dict[str, int] = {}
    for m in names:
        phases[seen.phase.get(m, "?")] = phases.get(seen.phase.get(m, "?"), 0) + 1
    waited = 0
    intervals: list[tuple[float, float]] = []
    stage_cpu: list[float] = []
    for m in finished:
        for stage in STAGES:
            job = f"{m}-{stage}"
            added, bound = seen.get(job, "pod added"), seen.get(job, "pod bound")
            if added and bound and bound - added > 0.5:
                waited += 1
            if job in seen.pod_of_job:
                # (no record: a stage that never ran, as an earlier one failed)
                with contextlib.suppress(ValueError, OSError, KeyError):
                    intervals.append(container_times(state, ns, seen.pod_of_job[job]))
                    stage_cpu.append(
                        float(exit_record(state, ns, seen.pod_of_job[job])["cpuSeconds"])
                    )
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    queued = sum(1 for m in names if m in seen.queued)
    print(
        f"{n} runs at once: {len(finished)} terminal ({phases}) in {wall:.1f} s = "
        f"{len(finished) / wall * 60:.1f} runs/min; per run median "
        f"{statistics.median(each) if each else 0:.1f} s, slowest {max(each, default=0):.1f} s; "
        f"stuck {len(stuck)}{' ' + str(stuck[:5]) if stuck else ''}"
    )
    print(
        f"  waiting: {queued} runs queued by the operator (reason Queued), {waited} stage pods "
        f"waited > 0.5 s for the scheduler; at most {most} stage processes ran at once"
    )
    unschedulable = failed_scheduling(ns, set(names))
    if unschedulable:
        pods, message = unschedulable
        print(f"  the scheduler refused {pods} stage pods at first: {message}")
    print_cpu(cpu_before, cpu_after, cpu_wall)
    if stage_cpu:
        print(
            f"    of which {len(stage_cpu)} stage processes {sum(stage_cpu):.1f} s "
            f"(median {statistics.median(stage_cpu):.2f} s each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--baseline", metavar="REF", help="also make the runs with the operator of git REF"
    )
    parser.add_argument("--concurrent", type=int, action="append", default=[])
    parser.add_argument("--limit", type=float, default=600, help="seconds a burst may take")
    args = parser.parse_args()
    env = stack_env()
    os.environ.update(env)
    config.load_kube_config(config_file=env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    state = Path(env["LINEAGE_HUB_STATE"])
    api, core = client.CustomObjectsApi(), client.CoreV1Api()
    ns = f"bench-e2e-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    seen = Seen()
    for target in (watch_jobs, watch_pods, watch_runs):
        threading.Thread(target=target, args=(ns, seen), daemon=True).start()
    time.sleep(1.0)  # the watches have started listing
    try:
        if args.runs:
            base = args.baseline and baseline(args.baseline, api, seen, ns, args.runs, state, env)
            if args.baseline:
                print("this checkout's operator:")
            ours = sequential(api, seen, ns, args.runs, state, env)
            if base:
                compare(base, ours)
        for n in args.concurrent:
            concurrent(api, seen, ns, n, args.limit, state)
    finally:
        core.delete_namespace(ns)


if __name__ == "__main__":
    main()
