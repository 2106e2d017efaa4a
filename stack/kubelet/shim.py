# ruff: noqa: E402, PTH105, PTH118, PTH123  (signal handlers first; os.path: pathlib is ~10 ms a start)
"""Container shim: runs one container process and outlives the kubelet.

    python -I -S shim.py <attempt-dir> -- <argv...>

Run by the kubelet in a new session (so it survives a kubelet restart) with
the container's env and working dir; the command runs in the shim's process
group, which is what the kubelet signals (the shim itself ignores SIGTERM,
SIGINT, SIGHUP and SIGQUIT, so it stays to record the exit; a signal that
comes before the command started means it is not started at all). It writes
the command's stdout/stderr to `<attempt-dir>/log` in the CRI log format
(`<RFC3339Nano> <stdout|stderr> <F|P> <text>`) and, when the command ends,
`<attempt-dir>/exit.json` atomically: `{"exitCode": n, "finishedAt": ..., "cpuSeconds": ...}`
(128+signal for a signal; 128 and a message when the command cannot start).

Standard library only, no package imports: it runs isolated from the
virtualenv and starts in a few milliseconds. It imports before the command starts
only what starting it needs (no pathlib, no json: ~15 ms of a container's start).
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


def _note(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


# First thing, so a stop request during start-up is noted rather than fatal.
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(_sig, _note)

import contextlib
import os
import resource
import selectors
import subprocess
import sys
import time

PARTIAL_LIMIT = 16 * 1024
DRAIN_AFTER_EXIT = 2.0


def rfc3339nano(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def write_json(path: str, data: dict[str, object]) -> None:
    import json  # once the command has ended (or failed to start)

    tmp = path + ".tmp"
    with open(tmp, "w") as out:
        out.write(json.dumps(data))
    os.replace(tmp, path)


class LogWriter:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def _emit(self, stream: str, tag: str, text: bytes) -> bytes:
        return rfc3339nano().encode() + f" {stream} {tag} ".encode() + text + b"\n"

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.pending[stream] + data
        out: list[bytes] = []
        *lines, rest = buf.split(b"\n")
        out.extend(self._emit(stream, "F", line) for line in lines)
        while len(rest) > PARTIAL_LIMIT:
            out.append(self._emit(stream, "P", rest[:PARTIAL_LIMIT]))
            rest = rest[PARTIAL_LIMIT:]
        self.pending[stream] = rest
        if out:
            os.write(self.fd, b"".join(out))

    def close(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                os.write(self.fd, self._emit(stream, "F", rest))
        os.close(self.fd)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: shim.py <attempt-dir> -- <argv...>", file=sys.stderr)
        return 2
    attempt = argv[0]
    command = argv[2:]
    log = LogWriter(os.path.join(attempt, "log"))
    started = time.time()
    if _received:
        log.close()
        code = 128 + _received[0]
        write_json(
            os.path.join(attempt, "exit.json"),
            {"exitCode": code, "finishedAt": rfc3339nano(), "message": "stopped before start"},
        )
        return code
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
        )
        # A signal to the group while the child was between fork and exec reached it
        # while our handler was still installed there, and was lost with the exec.
        # We noted it too: hand it on, now that the child has its own dispositions.
        for signum in _received:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)
    except OSError as exc:
        message = f"failed to start container process {command[0]!r}: {exc.strerror or exc}"
        log.feed("stderr", message.encode() + b"\n")
        log.close()
        write_json(
            os.path.join(attempt, "exit.json"),
            {"exitCode": 128, "reason": "StartError", "message": message,
             "finishedAt": rfc3339nano()},
        )  # fmt: skip
        return 128

    sel = selectors.DefaultSelector()
    assert child.stdout is not None and child.stderr is not None
    sel.register(child.stdout, selectors.EVENT_READ, "stdout")
    sel.register(child.stderr, selectors.EVENT_READ, "stderr")
    exited_at: float | None = None
    while sel.get_map():
        for key, _ in sel.select(timeout=0.2):
            data = os.read(key.fd, 65536)
            if data:
                log.feed(key.data, data)
            else:
                sel.unregister(key.fileobj)
        if exited_at is None and child.poll() is not None:
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > DRAIN_AFTER_EXIT:
            break  # a grandchild keeps the pipes open; stop reading
    code = child.wait()
    log.close()
    exit_code = 128 - code if code < 0 else code
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command (and what it reaped)
    write_json(
        os.path.join(attempt, "exit.json"),
        {
            "exitCode": exit_code,
            "finishedAt": rfc3339nano(),
            "ranFor": time.time() - started,
            "cpuSeconds": usage.ru_utime + usage.ru_stime,
        },
    )
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
