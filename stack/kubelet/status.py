"""Pod and container status documents, built from what the kubelet knows.

Pure functions: the pod worker keeps a `ContainerState` per container and
asks here for the phase and the `pods/status` patch. The patch is a
strategic-merge patch: conditions merge by `type` (so the scheduler's
PodScheduled and other writers' conditions survive), container status lists
are sent whole, and unused `state` members are sent as null so a merge can
never leave `running` beside `terminated`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

HOST_IP = "127.0.0.1"
UNKNOWN_EXIT = 137


def now() -> str:
    """Current time as a metav1.Time string (RFC 3339, seconds, UTC)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    """Current time as a metav1.MicroTime string."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Terminated:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    message: str = ""
    container_id: str = ""

    def doc(self) -> Obj:
        out: Obj = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            out["message"] = self.message
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def exit_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


@dataclass
class ContainerState:
    """What the kubelet knows about one container of a pod."""

    name: str
    image: str
    image_id: str = ""
    restart_count: int = 0
    pid: int | None = None
    started_at: str | None = None  # set while running
    terminated: Terminated | None = None
    waiting_reason: str = "PodInitializing"
    waiting_message: str = ""
    last: Terminated | None = None

    @property
    def running(self) -> bool:
        return self.terminated is None and self.started_at is not None

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.exit_code == 0

    def start(self, pid: int, started_at: str) -> None:
        if self.terminated is not None:
            self.last = self.terminated
        self.terminated = None
        self.pid = pid
        self.started_at = started_at
        self.waiting_reason = self.waiting_message = ""

    def finish(self, term: Terminated) -> None:
        self.terminated = term
        self.started_at = None

    def wait(self, reason: str, message: str = "") -> None:
        """Back to waiting (e.g. CrashLoopBackOff); the last run becomes lastState."""
        if self.terminated is not None:
            self.last = self.terminated
            self.terminated = None
        self.started_at = None
        self.waiting_reason, self.waiting_message = reason, message

    def doc(self) -> Obj:
        state: Obj = {"waiting": None, "running": None, "terminated": None}
        if self.terminated is not None:
            state["terminated"] = self.terminated.doc()
        elif self.started_at is not None:
            state["running"] = {"startedAt": self.started_at}
        else:
            waiting: Obj = {"reason": self.waiting_reason or "ContainerCreating"}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state["waiting"] = waiting
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "restartCount": self.restart_count,
            "started": self.running,
            "ready": self.running,
            "state": state,
            "lastState": {"terminated": self.last.doc()} if self.last else {},
        }
        if self.pid is not None:
            out["containerID"] = f"process://{self.pid}"
        return out


def pod_phase(policy: str, init: Sequence[ContainerState], main: Sequence[ContainerState]) -> str:
    """The phase the containers' states imply (before any pod-level verdict)."""
    for c in init:
        if c.succeeded:
            continue
        if c.terminated is not None and policy == "Never":
            return "Failed"
        return "Pending"
    if any(c.running for c in main):
        return "Running"
    if all(c.terminated is not None for c in main):
        if policy == "Always":
            return "Running"
        if all(c.succeeded for c in main):
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    # Some container waits: before its first start that is Pending, a restart Running.
    if any(c.restart_count > 0 or c.terminated or c.last or c.running for c in main):
        return "Running"
    return "Pending"


def _condition(
    kind: str, ok: bool, previous: dict[str, Obj], reason: str = "", msg: str = ""
) -> Obj:
    status = "True" if ok else "False"
    before = previous.get(kind)
    since = (
        before["lastTransitionTime"]
        if before and before.get("status") == status and before.get("lastTransitionTime")
        else now()
    )
    out: Obj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
        "reason": reason or None,
        "message": msg or None,
    }
    return out


def conditions(
    phase: str,
    sandbox: bool,
    init: Sequence[ContainerState],
    main: Sequence[ContainerState],
    previous: Iterable[Obj] = (),
) -> list[Obj]:
    prev = {c.get("type", ""): c for c in previous}
    terminal = phase in ("Succeeded", "Failed")
    done_reason = "PodCompleted" if terminal else ""
    init_ok = all(c.succeeded for c in init)
    pending_init = [c.name for c in init if not c.succeeded]
    unready = [c.name for c in main if not c.running]
    ready = not unready and not terminal
    unready_msg = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
    return [
        _condition("PodReadyToStartContainers", sandbox and not terminal, prev),
        _condition(
            "Initialized",
            init_ok,
            prev,
            done_reason if init_ok else "ContainersNotInitialized",
            "" if init_ok else f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        _condition(
            "ContainersReady", ready, prev, done_reason or ("" if ready else "ContainersNotReady"),
            "" if ready else unready_msg,
        ),
        _condition(
            "Ready", ready, prev, done_reason or ("" if ready else "ContainersNotReady"),
            "" if ready else unready_msg,
        ),
    ]  # fmt: skip


@dataclass
class PodStatus:
    """Everything the kubelet reports for a pod."""

    phase: str = "Pending"
    start_time: str | None = None
    reason: str | None = None
    message: str | None = None
    sandbox: bool = False
    init: list[ContainerState] = field(default_factory=list)
    main: list[ContainerState] = field(default_factory=list)

    def patch(self, previous_conditions: Iterable[Obj] = ()) -> Obj:
        status: Obj = {
            "phase": self.phase,
            "reason": self.reason,
            "message": self.message,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "conditions": conditions(
                self.phase, self.sandbox, self.init, self.main, previous_conditions
            ),
            "containerStatuses": [c.doc() for c in self.main],
        }
        if self.sandbox:
            status["podIP"] = HOST_IP
            status["podIPs"] = [{"ip": HOST_IP}]
        if self.start_time:
            status["startTime"] = self.start_time
        if self.init:
            status["initContainerStatuses"] = [c.doc() for c in self.init]
        return {"status": status}

    def all_containers(self) -> list[ContainerState]:
        return [*self.init, *self.main]
