"""Container processes: start through the shim, find again after a restart, stop.

Each run of a container (an "attempt") has a folder:

    <pod dir>/containers/<container>/<attempt>/
        run.json          pid, /proc start time, startedAt, argv (written at start)
        exit.json         exitCode, finishedAt (written by the shim at exit)
        log               stdout+stderr, CRI log format
        termination-log   what the container maps /dev/termination-log to

The shim is a session leader (its pid is the process group), so the kubelet
can die and come back: a live pid whose /proc start time matches run.json is
re-adopted; a dead one is judged from exit.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.kubelet.logs import tail_text
from stack.kubelet.status import UNKNOWN_EXIT, Terminated, exit_reason, now

SHIM = Path(__file__).with_name("shim.py")
Obj = dict[str, Any]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def alive(pid: int, start_ticks: int | None) -> bool:
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_ticks is None or stat[1] == start_ticks


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _seconds(stamp: str) -> str:
    """RFC3339Nano → metav1.Time (seconds)."""
    return stamp.split(".", maxsplit=1)[0].rstrip("Z") + "Z" if "." in stamp else stamp


def read_json(path: Path) -> Obj | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


@dataclass
class Attempt:
    """One run of one container."""

    dir: Path
    pid: int | None = None
    start_ticks: int | None = None
    started_at: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    killed_by_kubelet: bool = False

    @property
    def number(self) -> int:
        return int(self.dir.name)

    @property
    def log(self) -> Path:
        return self.dir / "log"

    @property
    def termination_log(self) -> Path:
        return self.dir / "termination-log"

    @classmethod
    def load(cls, folder: Path) -> Attempt:
        run = read_json(folder / "run.json") or {}
        return cls(
            dir=folder,
            pid=run.get("pid"),
            start_ticks=run.get("startTicks"),
            started_at=run.get("startedAt"),
            killed_by_kubelet=bool(run.get("killed")),
        )

    def mark_killed(self) -> None:
        self.killed_by_kubelet = True
        run = read_json(self.dir / "run.json") or {}
        run["killed"] = True
        write_json(self.dir / "run.json", run)

    @property
    def started(self) -> bool:
        return self.pid is not None

    def running(self) -> bool:
        if self.pid is None:
            return False
        if self.popen is not None:
            return self.popen.poll() is None
        return alive(self.pid, self.start_ticks)

    def result(self) -> Obj | None:
        """exit.json once the process has ended (synthesised if the shim left none)."""
        info = read_json(self.dir / "exit.json")
        if info is not None:
            return info
        if self.running():
            return None
        info = read_json(self.dir / "exit.json")  # written just before the shim exited
        if info is not None:
            return info
        if self.killed_by_kubelet:
            return {"exitCode": UNKNOWN_EXIT, "reason": "Error", "finishedAt": now(),
                    "message": "stopped by the kubelet"}  # fmt: skip
        return {
            "exitCode": UNKNOWN_EXIT,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "finishedAt": now(),
        }

    def terminated(self, info: Obj, policy: str, message: str = "") -> Terminated:
        code = int(info.get("exitCode", UNKNOWN_EXIT))
        return Terminated(
            exit_code=code,
            reason=str(info.get("reason") or exit_reason(code)),
            started_at=self.started_at or now(),
            finished_at=_seconds(str(info.get("finishedAt") or now())),
            message=str(info.get("message") or "") or message,
            container_id=f"process://{self.pid}" if self.pid else "",
        )

    def signal(self, sig: int) -> None:
        """Signal the container's process group (the shim itself ignores it and stays)."""
        if self.pid is not None and self.running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL everything in the container's process group (shim, process, children)."""
        if self.pid is None:
            return
        if self.popen is None and not alive(self.pid, self.start_ticks) and proc_stat(self.pid):
            return  # the pid now belongs to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)

    def reap(self) -> None:
        if self.popen is not None:
            self.popen.poll()


def termination_message(attempt: Attempt, policy: str, exit_code: int) -> str:
    """What the container left at its termination-message path (≤4096 bytes),
    or with FallbackToLogsOnError and an error exit, the end of its log."""
    try:
        data = attempt.termination_log.read_bytes()[:4096]
    except OSError:
        data = b""
    text = data.decode("utf-8", errors="replace")
    if text or policy != "FallbackToLogsOnError" or exit_code == 0:
        return text
    return tail_text(attempt.log, lines=80, max_bytes=2048)


def next_attempt(container_dir: Path) -> Path:
    container_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name) for p in container_dir.iterdir() if p.name.isdigit()]
    return container_dir / str(max(numbers, default=-1) + 1)


def attempts(container_dir: Path) -> list[Attempt]:
    if not container_dir.is_dir():
        return []
    folders = sorted(
        (p for p in container_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    return [Attempt.load(p) for p in folders]


def launch(folder: Path, argv: list[str], env: dict[str, str], cwd: Path) -> Attempt:
    """Start one attempt of a container under the shim."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "termination-log").touch()
    with (folder / "shim.log").open("ab") as shim_log:
        popen = subprocess.Popen(
            [sys.executable, "-I", "-S", str(SHIM), str(folder), "--", *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=shim_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    stat = proc_stat(popen.pid)
    attempt = Attempt(
        dir=folder,
        pid=popen.pid,
        start_ticks=stat[1] if stat else None,
        started_at=now(),
        popen=popen,
    )
    write_json(
        folder / "run.json",
        {"pid": attempt.pid, "startTicks": attempt.start_ticks,
         "startedAt": attempt.started_at, "argv": argv, "cwd": str(cwd)},
    )  # fmt: skip
    return attempt
