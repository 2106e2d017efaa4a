"""Pod workers: one thread per live pod drives it from scheduled to terminal.

A worker ticks (woken early by pod updates): it honours deletion and
activeDeadlineSeconds, sets up volumes, runs init containers one by one and
then the main containers, restarts per restartPolicy, and patches
`pods/status` whenever the status document changes. Everything it must
remember across a kubelet restart is on disk (see runtime.py); a restarted
kubelet builds the same picture from there.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stack.kubelet import container as cproc
from stack.kubelet import envvars, runtime, volumes
from stack.kubelet.api import ApiError
from stack.kubelet.images import CommandError, ImageNotMapped, Runtime
from stack.kubelet.runtime import Attempt
from stack.kubelet.status import (
    UNKNOWN_EXIT,
    ContainerState,
    PodStatus,
    Terminated,
    now,
    parse_time,
    pod_phase,
)

if TYPE_CHECKING:
    from stack.kubelet.kubelet import Kubelet

log = logging.getLogger("kubelet.pod")
Obj = dict[str, Any]

TICK = 0.05
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
# Retries of volume/env set-up: the API server's view of a just-bound pod (which
# the Node authorizer consults) can lag the binding by a moment, often by less than
# the pod's watch event reaches us: the first retry comes soon, before the next tick.
CONFIG_RETRY_FIRST = 0.01
CONFIG_RETRY_MAX = 2.0
TERMINAL = ("Succeeded", "Failed")


def pod_key(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def deletion_requested(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


@dataclass
class Slot:
    """One container of the pod and what is known about it."""

    spec: Obj
    init: bool
    state: ContainerState
    runtime: Runtime | None = None
    attempt: Attempt | None = None
    restart_at: float | None = None  # monotonic time; None: no (re)start due
    backoff: float = 0.0
    never_started: bool = True

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def is_running(self) -> bool:
        return self.state.running


class PodWorker(threading.Thread):
    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.uid = str(meta["uid"])
        self.dir = kubelet.pod_dir(pod)
        self.wake = threading.Event()
        self.gone = False
        self.status = PodStatus()
        self.slots: list[Slot] = []
        self.volumes: dict[str, Path] | None = None
        self.volume_retry_at = 0.0
        self.config_retry = 0.0
        self.last_sent: Obj | None = None
        self.conditions: list[Obj] = list((pod.get("status") or {}).get("conditions") or [])
        spec = pod.get("spec") or {}
        self.policy = str(spec.get("restartPolicy") or "Always")

    # -- called from the watch thread ----------------------------------------
    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def deleted(self) -> None:
        self.gone = True
        self.wake.set()

    # -- thread ------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod worker failed", extra={"pod": pod_key(self.pod)})
        finally:
            self.kubelet.worker_done(self)

    def _log(self, msg: str, **fields: Any) -> None:
        log.info(msg, extra={"pod": pod_key(self.pod), **fields})

    def _run(self) -> None:
        saved = self._load()
        if saved.get("verdict"):
            verdict = saved["verdict"]
            self._finish(verdict["phase"], verdict.get("reason"), verdict.get("message"))
            return
        if not self._check_images():
            return
        while True:
            if self.kubelet.stopping.is_set():
                return  # the kubelet exits; the containers keep running
            if self.gone:
                self._stop_all(0)
                self.kubelet.forget(self.uid)
                return
            pod = self.pod
            if deletion_requested(pod):
                grace = pod["metadata"].get("deletionGracePeriodSeconds")
                self._log("pod deletion requested, stopping containers", grace=grace)
                self._stop_all(30 if grace is None else int(grace))
                phase = "Succeeded" if self._all_main_succeeded() else "Failed"
                self._finish(phase, None, None)
                return
            deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
            if deadline is not None and self.status.start_time:
                age = time.time() - parse_time(self.status.start_time).timestamp()
                if age >= int(deadline):
                    self._log("active deadline exceeded", deadline=deadline)
                    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                    self._stop_all(int(grace))
                    self._finish(
                        "Failed",
                        "DeadlineExceeded",
                        "Pod was active on the node longer than the specified deadline",
                    )
                    return
            if self.volumes is None:
                self._setup_volumes()
            if self.volumes is not None:
                self._step()
                phase = pod_phase(
                    self.policy,
                    [s.state for s in self.slots if s.init],
                    [s.state for s in self.slots if not s.init],
                )
                if phase in TERMINAL:
                    self._finish(phase, None, None)
                    return
                self.status.phase = phase
            self._publish()
            # A set-up retry is due sooner than the next tick right after binding.
            self.wake.wait(min(TICK, self.config_retry) if self.config_retry else TICK)
            self.wake.clear()

    # -- state on disk -----------------------------------------------------
    def _load(self) -> Obj:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.pod["metadata"]
        saved: Obj = runtime.read_json(self.dir / "pod.json") or {}
        if not saved:
            saved = {
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": self.uid,
                "startTime": now(),
            }
            runtime.write_json(self.dir / "pod.json", saved)
        self.status.start_time = saved["startTime"]
        spec = self.pod.get("spec") or {}
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in spec.get(key) or []:
                state = ContainerState(name=c["name"], image=c.get("image", ""))
                slot = Slot(spec=c, init=init, state=state)
                self._adopt(slot)
                self.slots.append(slot)
        self.status.init = [s.state for s in self.slots if s.init]
        self.status.main = [s.state for s in self.slots if not s.init]
        return saved

    def _container_dir(self, slot: Slot) -> Path:
        return self.dir / "containers" / slot.name

    def _adopt(self, slot: Slot) -> None:
        """Rebuild a container's state from its attempt folders (after a restart)."""
        runs = runtime.attempts(self._container_dir(slot))
        while runs and not runs[-1].started:
            volumes.remove_tree(runs.pop().dir)  # never got going: start it afresh
        if not runs:
            return
        slot.never_started = False
        policy = slot.spec.get("terminationMessagePolicy") or "File"
        for prev in runs[:-1]:
            slot.state.last = prev.terminated(prev.result() or {}, policy)
        current = runs[-1]
        slot.attempt = current
        slot.state.restart_count = current.number
        slot.state.pid = current.pid
        slot.state.started_at = current.started_at
        slot.state.waiting_reason = ""
        result = current.result()
        if result is None:
            self._log("re-adopted running container", container=slot.name, pid=current.pid)
            return
        self._record_exit(slot, current, result)

    def _save_verdict(self, phase: str, reason: str | None, message: str | None) -> None:
        saved = runtime.read_json(self.dir / "pod.json") or {}
        saved["verdict"] = {"phase": phase, "reason": reason, "message": message}
        runtime.write_json(self.dir / "pod.json", saved)

    # -- images, volumes -----------------------------------------------------
    def _check_images(self) -> bool:
        """Map every image to a runtime and check each command can be formed."""
        problems: list[tuple[Slot, str, str]] = []
        for slot in self.slots:
            image = str(slot.spec.get("image", ""))
            try:
                slot.runtime = self.kubelet.images.resolve(image)
                slot.state.image_id = slot.runtime.image_id
                slot.runtime.argv(
                    list(slot.spec.get("command") or []),
                    list(slot.spec.get("args") or []),
                    f"pod {pod_key(self.pod)} container {slot.name}",
                )
            except ImageNotMapped as exc:
                problems.append((slot, "ImageNotMapped", str(exc)))
            except CommandError as exc:
                problems.append((slot, "CreateContainerError", str(exc)))
        if not problems:
            return True
        for slot, reason, message in problems:
            slot.state.waiting_reason = reason
            slot.state.waiting_message = message
            self._log("container cannot run", container=slot.name, reason=reason, error=message)
            self.kubelet.events.pod(self.pod, reason, message, slot.name, warning=True)
            if slot.never_started:
                slot.state.finish(
                    Terminated(exit_code=128, reason=reason, started_at=now(),
                               finished_at=now(), message=message)
                )  # fmt: skip
        first = problems[0]
        self._finish("Failed", first[1], first[2])
        return False

    def _setup_volumes(self) -> None:
        if time.monotonic() < self.volume_retry_at:
            return
        try:
            self.volumes = volumes.prepare(
                self.pod, self.dir, self.kubelet.state_dir, self.kubelet.volume_sources
            )
            self.status.sandbox = True
            self.config_retry = 0.0
        except (volumes.VolumeError, ApiError, OSError) as exc:
            message = f"MountVolume.SetUp failed: {exc}"
            delay = self._next_retry()
            self.volume_retry_at = time.monotonic() + delay
            if not self._persistent():
                return
            self._log("volume setup failed, will retry", error=str(exc))
            for slot in self.slots:
                if slot.state.waiting_message != message and slot.never_started:
                    slot.state.waiting_reason = "ContainerCreating"
                    slot.state.waiting_message = message

    def _next_retry(self) -> float:
        self.config_retry = min(CONFIG_RETRY_MAX, self.config_retry * 2 or CONFIG_RETRY_FIRST)
        return self.config_retry

    def _persistent(self) -> bool:
        """Set-up has failed for a while (not just the moment after binding)."""
        return self.config_retry >= CONFIG_RETRY_MAX / 2

    # -- containers ----------------------------------------------------------
    def _step(self) -> None:
        for slot in self.slots:
            if not slot.init:
                continue
            self._advance(slot)
            if not slot.state.succeeded:
                return  # init containers run one after the other
        for slot in self.slots:
            if not slot.init:
                self._advance(slot)

    def _should_restart(self, slot: Slot, exit_code: int) -> bool:
        if self.policy == "Always":
            return not slot.init or exit_code != 0
        return self.policy == "OnFailure" and exit_code != 0

    def _record_exit(self, slot: Slot, attempt: Attempt, info: Obj) -> None:
        policy = slot.spec.get("terminationMessagePolicy") or "File"
        code = int(info.get("exitCode", UNKNOWN_EXIT))
        message = runtime.termination_message(attempt, policy, code)
        term = attempt.terminated(info, policy, message)
        slot.state.finish(term)
        if self._should_restart(slot, code):
            slot.backoff = min(BACKOFF_MAX, slot.backoff * 2 if slot.backoff else BACKOFF_START)
            slot.restart_at = time.monotonic() + slot.backoff
        else:
            slot.restart_at = None

    def _advance(self, slot: Slot) -> None:
        attempt = slot.attempt
        if slot.state.running and attempt is not None:
            info = attempt.result()
            if info is None:
                return
            attempt.reap()
            self._record_exit(slot, attempt, info)
            term = slot.state.terminated
            code = term.exit_code if term else None
            self._log("container exited", container=slot.name, exit_code=code)
            return
        if not slot.never_started and slot.restart_at is None:
            return  # finished for good
        if slot.restart_at is not None and time.monotonic() < slot.restart_at:
            if slot.state.terminated is not None and slot.state.waiting_reason == "":
                name = slot.name
                slot.state.wait(
                    "CrashLoopBackOff",
                    f"back-off {slot.backoff:g}s restarting failed container={name} "
                    f"pod={self.pod['metadata']['name']}_{self.pod['metadata']['namespace']}"
                    f"({self.uid})",
                )
            return
        self._start(slot)

    def _start(self, slot: Slot) -> None:
        assert slot.runtime is not None and self.volumes is not None
        pod = self.pod
        folder = runtime.next_attempt(self._container_dir(slot))
        root = self._container_dir(slot) / "root"
        k = self.kubelet
        try:
            own_env = envvars.resolve(pod, slot.spec, k.configmap_data, k.secret_data, k.capacity)
            pm = cproc.path_map(
                slot.spec, self.volumes, root, folder / "termination-log", volumes.mount_source
            )
            pm.build_root()
            base = cproc.base_env(slot.runtime, pod, root, k.api_host, k.api_port)
            kubeconfig = cproc.service_account_kubeconfig(
                pm, self.dir / "kubeconfig", pod["metadata"]["namespace"], k.api_host, k.api_port
            )
            if kubeconfig is not None:
                base["KUBECONFIG"] = str(kubeconfig)
            proc = cproc.build(pod, slot.spec, slot.runtime, pm, own_env=own_env, base=base)
            proc.cwd.mkdir(parents=True, exist_ok=True)
        except (envvars.EnvError, ApiError, KeyError, OSError, ValueError) as exc:
            slot.restart_at = time.monotonic() + self._next_retry()
            if not self._persistent():
                return
            reason = "CreateContainerConfigError"
            if slot.state.waiting_message != str(exc):
                self._log("container config error, will retry", container=slot.name, error=str(exc))
                k.events.pod(pod, "Failed", f"Error: {exc}", slot.name, warning=True)
            if slot.state.terminated is not None:
                slot.state.wait(reason, str(exc))
            slot.state.waiting_reason, slot.state.waiting_message = reason, str(exc)
            return
        attempt = runtime.launch(folder, proc.argv, proc.env, proc.cwd)
        assert attempt.pid is not None and attempt.started_at is not None
        slot.attempt = attempt
        slot.never_started = False
        slot.restart_at = None
        self.config_retry = 0.0
        slot.state.restart_count = attempt.number
        slot.state.start(attempt.pid, attempt.started_at)
        self._log("container started", container=slot.name, pid=attempt.pid, argv=proc.argv)
        k.events.pod(pod, "Started", f"Started container {slot.name}", slot.name)

    def _all_main_succeeded(self) -> bool:
        return all(s.state.succeeded for s in self.slots if not s.init)

    def _stop_all(self, grace: int) -> None:
        """SIGTERM running containers, SIGKILL what is left after `grace` seconds."""
        running = [s for s in self.slots if s.is_running() and s.attempt is not None]
        for slot in running:
            assert slot.attempt is not None
            slot.attempt.mark_killed()
            slot.attempt.signal(signal.SIGTERM)
            self.kubelet.events.pod(self.pod, "Killing", f"Stopping container {slot.name}",
                                    slot.name)  # fmt: skip
        end = time.monotonic() + max(0, grace)
        while running and time.monotonic() < end and not self.gone:
            if all(s.attempt is not None and not s.attempt.running() for s in running):
                break
            time.sleep(TICK)
        for slot in self.slots:
            slot.restart_at = None
            if slot.attempt is not None:
                slot.attempt.kill_group()
        for slot in running:
            assert slot.attempt is not None
            info = slot.attempt.result() or {"exitCode": UNKNOWN_EXIT}
            policy = slot.spec.get("terminationMessagePolicy") or "File"
            code = int(info.get("exitCode", UNKNOWN_EXIT))
            message = runtime.termination_message(slot.attempt, policy, code)
            slot.state.finish(slot.attempt.terminated(info, policy, message))

    def _finish(self, phase: str, reason: str | None, message: str | None) -> None:
        """Record the pod's terminal phase, publish it, clean up stragglers."""
        self._save_verdict(phase, reason, message)
        for slot in self.slots:
            if slot.attempt is not None:
                slot.attempt.kill_group()
            if slot.state.terminated is None:
                last_running = slot.state.started_at is not None
                slot.state.finish(
                    Terminated(
                        exit_code=UNKNOWN_EXIT,
                        reason="ContainerStatusUnknown",
                        started_at=slot.state.started_at or now(),
                        finished_at=now(),
                        message="The container could not be located when the pod was terminated"
                        if last_running
                        else "The container was not started before the pod ended",
                    )
                )
        self.status.phase, self.status.reason, self.status.message = phase, reason, message
        self.status.sandbox = False
        self._log("pod finished", phase=phase, reason=reason)
        for _ in range(50):
            if self.gone or self._publish():
                break
            time.sleep(0.2)
        self.kubelet.pod_terminal(self)

    def _publish(self) -> bool:
        """Patch pods/status if the document changed; False when the patch failed."""
        if self.gone:
            return False
        doc = self.status.patch(self.conditions)
        if doc == self.last_sent:
            return True
        meta = self.pod["metadata"]
        try:
            out = self.kubelet.api.patch_pod_status(meta["namespace"], meta["name"], doc)
        except ApiError as exc:
            if exc.status == 404:
                self.gone = True
            log.warning("pod status patch failed", extra={"pod": pod_key(self.pod),
                                                          "error": str(exc)})  # fmt: skip
            return False
        except Exception as exc:
            log.warning("pod status patch failed", extra={"pod": pod_key(self.pod),
                                                          "error": str(exc)})  # fmt: skip
            return False
        self.last_sent = doc
        with contextlib.suppress(KeyError, TypeError):
            self.conditions = list(out["status"].get("conditions") or [])
        return True
