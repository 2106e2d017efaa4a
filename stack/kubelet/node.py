"""The Node object and its heartbeats (node status + a Lease in kube-node-lease)."""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

from stack.kubelet.api import Api, ApiError
from stack.kubelet.status import micro_now, now

log = logging.getLogger("kubelet.node")

Obj = dict[str, Any]
KUBELET_VERSION = "v1.35.4"
LEASE_NS = "kube-node-lease"
LEASE_DURATION = 40
LEASE_RENEW = 10.0
STATUS_EVERY = 60.0


def capacity(max_pods: int = 110) -> dict[str, str]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{mem // 1024}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": "100Gi",
    }


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(path).read_text().strip()
        except OSError:
            continue
    return ""


def node_status(port: int, node_name: str, cap: dict[str, str]) -> Obj:
    stamp = now()

    def cond(kind: str, status: str, reason: str, message: str) -> Obj:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    uname = platform.uname()
    return {
        "capacity": cap,
        "allocatable": cap,
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": _machine_id(),
            "systemUUID": _machine_id(),
            "bootID": _boot_id(),
            "kernelVersion": uname.release,
            "osImage": "process kubelet (lineage-hub local stack)",
            "containerRuntimeVersion": "process://1",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                uname.machine, uname.machine
            ),
        },
    }


def _keep_transition_times(new: list[Obj], old: list[Obj]) -> list[Obj]:
    before = {c.get("type"): c for c in old}
    for c in new:
        prev = before.get(c["type"])
        if prev and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            c["lastTransitionTime"] = prev["lastTransitionTime"]
    return new


class NodeAgent:
    """Registers the node, then keeps its Lease and status fresh on a thread."""

    def __init__(self, api: Api, name: str, port: int, max_pods: int = 110) -> None:
        self.api = api
        self.name = name
        self.port = port
        self.capacity = capacity(max_pods)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": node_status(self.port, self.name, self.capacity)["nodeInfo"][
                "architecture"
            ],
            "node.lineagehub.io/process-kubelet": "true",
        }
        existing = self.api.node(self.name)
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": labels},
                "spec": {},
            }
            try:
                self.api.create_node(body)
                log.info("node registered", extra={"node": self.name})
            except ApiError as exc:
                if exc.status != 409:
                    raise
        else:
            self.api.patch_node(self.name, {"metadata": {"labels": labels}})
        self.update_status()
        self.renew_lease()

    def update_status(self) -> None:
        current = self.api.node(self.name) or {}
        status = node_status(self.port, self.name, self.capacity)
        old = (current.get("status") or {}).get("conditions") or []
        status["conditions"] = _keep_transition_times(status["conditions"], old)
        self.api.patch_node(self.name, {"status": status}, status=True)

    def renew_lease(self) -> None:
        lease = self.api.lease(LEASE_NS, self.name)
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": micro_now(),
        }
        if lease is None:
            node = self.api.node(self.name) or {}
            meta: Obj = {"name": self.name, "namespace": LEASE_NS}
            if node.get("metadata", {}).get("uid"):
                meta["ownerReferences"] = [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name,
                     "uid": node["metadata"]["uid"]}
                ]  # fmt: skip
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": meta, "spec": spec}  # fmt: skip
            try:
                self.api.create_lease(LEASE_NS, body)
            except ApiError as exc:
                if exc.status != 409:
                    raise
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        self.api.update_lease(LEASE_NS, lease)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="node-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(LEASE_RENEW):
            try:
                if self.api.node(self.name) is None:
                    log.warning("node object is gone; registering again")
                    self.register()
                self.renew_lease()
                if time.monotonic() - last_status >= STATUS_EVERY:
                    self.update_status()
                    last_status = time.monotonic()
            except Exception as exc:
                log.warning("node heartbeat failed", extra={"error": str(exc)})
