"""The kubelet itself: node registration, the pod watch, workers, the HTTPS endpoint."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from stack.kubelet import envvars, runtime, volumes
from stack.kubelet.api import Api, ApiError
from stack.kubelet.events import Recorder
from stack.kubelet.images import ImageConfig
from stack.kubelet.logserver import LogSource
from stack.kubelet.node import NodeAgent
from stack.kubelet.pods import TERMINAL, PodWorker, deletion_requested

log = logging.getLogger("kubelet")
Obj = dict[str, Any]
WATCH_TIMEOUT = 300


def _uid_of(folder: Path) -> str:
    return folder.name.rsplit("_", 1)[-1]


def kill_pod_processes(pod_dir: Path) -> int:
    """SIGKILL every live container process group recorded under a pod folder."""
    killed = 0
    containers = pod_dir / "containers"
    if not containers.is_dir():
        return 0
    for cdir in containers.iterdir():
        for attempt in runtime.attempts(cdir):
            if attempt.pid is not None and runtime.group_alive(attempt.pid):
                attempt.kill_group()
                killed += 1
    return killed


def stop_all_pods(state_dir: Path) -> int:
    """End every container process the kubelet started under `state_dir`."""
    pods = state_dir / "pods"
    if not pods.is_dir():
        return 0
    return sum(kill_pod_processes(p) for p in pods.iterdir() if p.is_dir())


class Kubelet:
    def __init__(
        self,
        api: Api,
        node_name: str,
        port: int,
        state_dir: Path,
        *,
        images: ImageConfig,
        max_pods: int = 110,
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.state_dir = state_dir
        self.images = images
        self.node = NodeAgent(api, node_name, port, max_pods)
        self.capacity = self.node.capacity
        self.events = Recorder(api, node_name)
        self.volume_sources = volumes.Sources(api.configmap, api.secret, api.service_account_token)
        url = urllib.parse.urlsplit(api.host)
        self.api_host = url.hostname or ""
        self.api_port = str(url.port or (443 if url.scheme == "https" else 80))
        self.lock = threading.RLock()
        self.workers: dict[str, PodWorker] = {}
        self.finished: dict[str, Obj] = {}  # terminal pods still in the API
        self.delete_sent: set[str] = set()
        self.stopping = threading.Event()
        (state_dir / "pods").mkdir(parents=True, exist_ok=True)

    # -- helpers for workers ---------------------------------------------------
    def pod_dir(self, pod: Obj) -> Path:
        meta = pod["metadata"]
        return self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"

    def configmap_data(self, ns: str, name: str) -> dict[str, str] | None:
        obj = self.api.configmap(ns, name)
        return None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}

    def secret_data(self, ns: str, name: str) -> dict[str, str] | None:
        obj = self.api.secret(ns, name)
        return None if obj is None else envvars.decode_secret(obj.get("data"))

    def worker_done(self, worker: PodWorker) -> None:
        with self.lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]

    def pod_terminal(self, worker: PodWorker) -> None:
        with self.lock:
            self.workers.pop(worker.uid, None)
            if not worker.gone:
                self.finished[worker.uid] = worker.pod
        if worker.gone:
            self.forget(worker.uid)
            return
        self._delete_if_requested(worker.pod)

    def forget(self, uid: str) -> None:
        """The pod is gone from the API: end its processes, drop its folder."""
        with self.lock:
            self.workers.pop(uid, None)
            pod = self.finished.pop(uid, None)
            self.delete_sent.discard(uid)
        for folder in (self.state_dir / "pods").glob(f"*_{uid}"):
            kill_pod_processes(folder)
            volumes.remove_tree(folder)
        if pod is not None:
            log.info("pod removed", extra={"pod": pod["metadata"]["name"], "uid": uid})

    def _delete_if_requested(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if not deletion_requested(pod) or uid in self.delete_sent:
            return
        self.delete_sent.add(uid)
        meta = pod["metadata"]
        try:
            self.api.delete_pod(meta["namespace"], meta["name"], uid)
            log.info("pod deleted", extra={"pod": f"{meta['namespace']}/{meta['name']}"})
        except Exception as exc:
            self.delete_sent.discard(uid)
            log.warning("pod delete failed", extra={"pod": meta["name"], "error": str(exc)})

    # -- the watch -------------------------------------------------------------
    def sync(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker is not None:
                worker.update(pod)
                return
            phase = (pod.get("status") or {}).get("phase")
            if uid in self.finished or phase in TERMINAL:
                self.finished[uid] = pod
            else:
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
                return
        self._delete_if_requested(pod)

    def deleted(self, uid: str) -> None:
        with self.lock:
            worker = self.workers.get(uid)
        if worker is not None:
            worker.deleted()
        else:
            self.forget(uid)

    def relist(self, first: bool = False) -> str:
        listing = self.api.list_pods(self.node_name)
        pods = listing.get("items") or []
        seen = {p["metadata"]["uid"] for p in pods}
        if first:
            for folder in sorted((self.state_dir / "pods").iterdir()):
                if folder.is_dir() and _uid_of(folder) not in seen:
                    n = kill_pod_processes(folder)
                    log.info("removing state of a pod deleted while away",
                             extra={"dir": folder.name, "killed": n})  # fmt: skip
                    volumes.remove_tree(folder)
        for pod in pods:
            self.sync(pod)
        with self.lock:
            known = set(self.workers) | set(self.finished)
        for uid in known - seen:
            self.deleted(uid)
        return str(listing["metadata"]["resourceVersion"])

    def _watch_once(self, rv: str, stop: threading.Event) -> str | None:
        """Follow the watch until the server ends it; None when a relist is needed."""
        try:
            for event in self.api.watch_pods(self.node_name, rv, WATCH_TIMEOUT):
                if stop.is_set():
                    return rv
                kind = event.get("type")
                obj = event.get("raw_object") or {}
                if kind == "ERROR":
                    log.info("watch error, relisting", extra={"status": obj.get("code")})
                    return None
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if new_rv:
                    rv = new_rv
                if kind in ("ADDED", "MODIFIED"):
                    self.sync(obj)
                elif kind == "DELETED":
                    self.deleted(obj["metadata"]["uid"])
        except ApiError as exc:
            log.info("watch failed, relisting", extra={"error": str(exc)})
            return None
        except Exception as exc:
            status = getattr(exc, "status", None)
            log.info("watch ended, relisting", extra={"error": str(exc)[:200], "status": status})
            return None
        return rv

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.node.register()
                break
            except Exception as exc:
                log.warning("node registration failed, retrying", extra={"error": str(exc)})
                stop.wait(2)
        self.node.start()
        rv: str | None = None
        first = True
        while not stop.is_set():
            try:
                if rv is None:
                    rv = self.relist(first)
                    first = False
                rv = self._watch_once(rv, stop)
            except Exception as exc:
                log.warning("pod sync failed, retrying", extra={"error": str(exc)[:300]})
                rv = None
                stop.wait(1)
        self.stopping.set()
        self.node.stop()

    # -- logs ----------------------------------------------------------------
    def locate(self, ns: str, pod: str, container: str, previous: bool) -> LogSource | str:
        folders = list((self.state_dir / "pods").glob(f"{ns}_{pod}_*"))
        if not folders:
            return f'pod "{pod}" in namespace "{ns}" has no containers on node {self.node_name}'
        with self.lock:
            known = set(self.workers) | set(self.finished)
        folders.sort(key=lambda f: (_uid_of(f) in known, f.stat().st_mtime))
        runs = [a for a in runtime.attempts(folders[-1] / "containers" / container) if a.started]
        if not runs:
            return f'container "{container}" in pod "{pod}" is waiting to start'
        if previous:
            if len(runs) < 2:
                return f'previous terminated container "{container}" in pod "{pod}" not found'
            return LogSource(runs[-2].log, lambda: False)
        current = runs[-1]
        return LogSource(current.log, current.running)


def wait_ready(api: Api, node: str, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            obj = api.node(node) or {}
            for cond in (obj.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Ready" and cond.get("status") == "True":
                    return True
        time.sleep(0.5)
    return False
