"""Start, check and stop the stack's pieces as processes we own.

Each piece runs in its own session (process group) so `down` can end it and
everything it spawned, and nothing else. A pid file records the pid and the
process start time, so a reused pid is never mistaken for our server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stack import paths, progress
from stack import ports as stack_ports
from stack.errors import StackError
from stack.piece import Piece, port_holder, port_open

POLL = 0.25
PORT_GRACE = 5.0


@dataclass(frozen=True)
class Running:
    pid: int
    started: str  # /proc/<pid>/stat start time, guards against pid reuse


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19]


def _live(pid_file: Path) -> Running | None:
    try:
        doc = json.loads(pid_file.read_text())
        pid, started = int(doc["pid"]), str(doc["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _proc_start(pid) != started:
        return None
    return Running(pid, started)


def running(piece: Piece) -> Running | None:
    """The piece's live process, if the pid file points at one we started."""
    return _live(paths.pid_path(piece.name))


def running_pid_file(pid_file: Path) -> Running | None:
    """The live process a pid file of ours records, if it still runs."""
    return _live(pid_file)


def record(pid_file: Path, pid: int, **extra: object) -> None:
    """Write a pid file: the pid and its start time (so a reused pid is never ours)."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(json.dumps({"pid": pid, "started": _proc_start(pid) or "", **extra}))


def wait_gone(pid: int, timeout: float = 20.0) -> None:
    """Wait for a process group we signalled to end; kill it when it takes too long."""
    started = _proc_start(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and started and _proc_start(pid) == started:
        _reap(pid)
        time.sleep(POLL)
    if started and _proc_start(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def any_running(state: Path) -> bool:
    """Whether a piece of the stack whose state dir is `state` runs."""
    pids = state / "pids"
    return pids.is_dir() and any(_live(f) is not None for f in pids.glob("*.pid"))


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(piece: Piece) -> Running:
    """Start one piece and wait until it is ready, or raise naming it and its log."""
    for port in piece.ports:
        # A process that was just killed may take a moment to release its sockets.
        freed = time.monotonic() + PORT_GRACE
        while port_open(port) and time.monotonic() < freed:
            time.sleep(POLL)
        if port_open(port):
            raise StackError(piece.name, f"port {port} is already in use by {port_holder(port)}")
    launch = piece.command()
    piece.log.parent.mkdir(parents=True, exist_ok=True)
    paths.pid_path(piece.name).parent.mkdir(parents=True, exist_ok=True)
    with piece.log.open("ab") as log:
        log.write(
            f"\n=== start {time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(launch.argv)}\n".encode()
        )
        log.flush()
        proc = subprocess.Popen(
            launch.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=launch.cwd,
            env={**os.environ, **launch.env},
            start_new_session=True,
            user=launch.user,
        )
    started = _proc_start(proc.pid) or ""
    record(paths.pid_path(piece.name), proc.pid)
    deadline = time.monotonic() + piece.ready_timeout
    step = progress.current().step(
        f"{piece.name}: started, waiting for it to answer",
        f"gives up after {piece.ready_timeout:.0f} s",
    )
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            paths.pid_path(piece.name).unlink(missing_ok=True)
            step.fail(f"exited with code {code}")
            raise StackError(
                piece.name,
                f"exited with code {code} before it was ready; last lines:\n{_tail(piece.log)}",
                piece.log,
            )
        if piece.ready():
            step.clear()
            return Running(proc.pid, started)
        step.tick()
        time.sleep(POLL)
    step.fail(f"not ready after {piece.ready_timeout:.0f} s")
    _terminate(piece, Running(proc.pid, started))
    raise StackError(
        piece.name,
        f"not ready after {piece.ready_timeout:.0f}s; last lines:\n{_tail(piece.log)}",
        piece.log,
    )


def _terminate(piece: Piece, proc: Running) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, piece.stop_signal)
    wait_gone(proc.pid, piece.stop_timeout)
    paths.pid_path(piece.name).unlink(missing_ok=True)
    # `down` returns once the ports are free again, so an `up` right after it works.
    freed = time.monotonic() + PORT_GRACE
    while any(port_open(p) for p in piece.ports) and time.monotonic() < freed:
        time.sleep(POLL)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(piece: Piece) -> bool:
    """Stop a piece if it runs; True when something was stopped."""
    proc = running(piece)
    if proc is None:
        paths.pid_path(piece.name).unlink(missing_ok=True)
        return False
    _terminate(piece, proc)
    return True


def up(pieces: Sequence[Piece], on_line: Callable[[str], None] | None = None) -> list[str]:
    """Bring pieces up in order; a piece already running and ready is left alone.

    Returns a line per piece, each also handed to `on_line` as soon as it is known.
    On failure everything this call started is stopped again, so a failed `up`
    leaves nothing behind, and the error names the piece and its log.
    """
    if not any(piece.port_names for piece in pieces):
        return _up(pieces, on_line)
    # The stack's ports are fixed before any piece writes into its state dir (a state
    # dir with data but no recorded ports is one from before ports were recorded); while
    # this runs, another stack choosing its ports counts them as taken.
    with stack_ports.starting(paths.state_dir()):
        stack_ports.current()
        return _up(pieces, on_line)


def _up(pieces: Sequence[Piece], on_line: Callable[[str], None] | None) -> list[str]:
    started: list[Piece] = []
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    try:
        for piece in pieces:
            t0 = time.monotonic()
            piece.build()
            if not getattr(piece, "server", True):
                piece.prepare()
                say(f"{piece.name}: ready (tool)")
                continue
            if running(piece) is not None and piece.ready():
                say(f"{piece.name}: already up")
                continue
            stop(piece)  # a stale, unready process of ours
            piece.prepare()
            start(piece)
            started.append(piece)
            piece.after_ready()
            say(f"{piece.name}: up in {time.monotonic() - t0:.1f}s")
    except BaseException:
        for piece in reversed(started):
            stop(piece)
        raise
    return lines


def down(pieces: Sequence[Piece]) -> list[str]:
    lines = []
    for piece in reversed(pieces):
        if stop(piece):
            lines.append(f"{piece.name}: stopped")
        piece.after_stop()
    return lines
