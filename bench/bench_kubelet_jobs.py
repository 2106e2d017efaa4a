"""Job latency through the real control plane and the process kubelet.

    python bench/bench_kubelet_jobs.py [--jobs 20] [--kubeconfig F]

For each of N Jobs created one after the other (a `python -c` pod that
prints and exits 0): the time from the Job's create call returning to its
pod being reported Running, to the pod's Succeeded phase, and to the Job's
Complete condition (the Job controller batches pod events for up to 1 s). Times come
from watches, not polling. Prints min / median / p90 / max.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client

from stack import paths
from stack.kubelet.api import Api, ApiError, RawWatch

Obj = dict[str, Any]


class Seen:
    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.complete: dict[str, float] = {}
        self.cond = threading.Condition()

    def mark(self, table: dict[str, float], job: str) -> None:
        with self.cond:
            table.setdefault(job, time.monotonic())
            self.cond.notify_all()


def watch(api: Api, ns: str, seen: Seen, stop: threading.Event, kind: str) -> None:
    func: Any = api.core.list_namespaced_pod
    if kind == "jobs":
        func = client.BatchV1Api(api.client).list_namespaced_job
    while not stop.is_set():
        w = RawWatch()  # type: ignore[no-untyped-call]
        for event in w.stream(func, namespace=ns, timeout_seconds=30):  # type: ignore[no-untyped-call]
            obj = event["raw_object"]
            if stop.is_set():
                return
            if kind == "pods":
                job = (obj["metadata"].get("labels") or {}).get("job-name")
                statuses = (obj.get("status") or {}).get("containerStatuses") or []
                if job and any((cs.get("state") or {}).get("running") for cs in statuses):
                    seen.mark(seen.running, job)
                if job and (obj.get("status") or {}).get("phase") == "Succeeded":
                    seen.mark(seen.running, job)  # ran faster than one watch event
                    seen.mark(seen.succeeded, job)
            else:
                conds = (obj.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Complete" and c["status"] == "True" for c in conds):
                    seen.mark(seen.complete, obj["metadata"]["name"])


def job(name: str) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.12",
                            "command": ["python", "-c", "print('bench')"],
                        }
                    ],
                }
            },
        },
    }


def summary(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[max(0, round(0.9 * len(ms)) - 1)]
    return (
        f"{label:<26} n={len(ms):<3} min={ms[0]:7.0f} ms  median={statistics.median(ms):7.0f} ms"
        f"  p90={p90:7.0f} ms  max={ms[-1]:7.0f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    default_kc = os.environ.get("KUBECONFIG") or str(paths.state_dir() / "pki" / "admin.kubeconfig")
    parser.add_argument("--kubeconfig", default=default_kc)
    args = parser.parse_args()
    api = Api(args.kubeconfig)
    ns = f"bench-kubelet-{uuid.uuid4().hex[:6]}"
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    try:
        end = time.monotonic() + 30
        while api.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default") is None:
            if time.monotonic() > end:
                raise SystemExit("no default service account after 30s")
            time.sleep(0.1)
        seen, stop = Seen(), threading.Event()
        for kind in ("pods", "jobs"):
            threading.Thread(target=watch, args=(api, ns, seen, stop, kind), daemon=True).start()
        time.sleep(1.0)  # let both watches start
        to_running: list[float] = []
        to_complete: list[float] = []
        to_succeeded: list[float] = []
        for i in range(args.jobs):
            name = f"bench-{i}"
            created = time.monotonic()
            api.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job(name))
            with seen.cond:
                ok = seen.cond.wait_for(lambda n=name: n in seen.complete, timeout=120)  # type: ignore[misc]
            if not ok:
                raise SystemExit(f"job {name} did not complete in 120s")
            to_complete.append(seen.complete[name] - created)
            if name in seen.running:
                to_running.append(seen.running[name] - created)
            if name in seen.succeeded:
                to_succeeded.append(seen.succeeded[name] - created)
        stop.set()
        print(f"process kubelet, {args.jobs} sequential Jobs (python -c print), namespace {ns}")
        if to_running:
            print(summary("created -> pod Running", to_running))
        if to_succeeded:
            print(summary("created -> pod Succeeded", to_succeeded))
        print(summary("created -> Job Complete", to_complete))
    finally:
        with contextlib.suppress(ApiError):
            api.request("DELETE", f"/api/v1/namespaces/{ns}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
