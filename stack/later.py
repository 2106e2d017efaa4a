"""Pieces built and started in the background once the rest of the stack is up.

`stack up --later jaeger` (what `make demo` runs) leaves out a piece that still has
to be compiled (Jaeger: 608 CPU seconds of Go) and, once everything else is
up, hands it to a detached process whose compile runs at a lower priority (the
servers it starts do not), so the first run starts at once. Nothing on a run's
path needs Jaeger: the operator started without it checks a run's trace in
ClickHouse only (`TraceRecorded`), and Jaeger's Kafka receiver reads the spans
topic from its earliest offset, so the run's spans reach Jaeger once it is up.
Then the process restarts the pieces that read the others' endpoints when they
start (the operator, the gateway), so later runs are checked in Jaeger too. A
piece already in the cache is started at once like any other.

The process records itself in the stack's pid folder (`later.pid`): while it runs
the stack counts as live (its ports stay claimed), `stack status` shows the piece
as building, a second `up --later` does not start another, and `stack down` ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from stack import gocompile, paths, progress, supervisor
from stack.errors import StackError
from stack.piece import Piece
from stack.registry import ALL, select

NAME = "later"
NICE = 10


def split(pieces: Sequence[Piece], later: Sequence[str]) -> tuple[list[Piece], list[Piece]]:
    """(now, later): the pieces named in `later` that still need a build go later."""
    wanted = set(later)
    deferred = [p for p in pieces if p.name in wanted and not p.built()]
    return [p for p in pieces if p not in deferred], deferred


def log_path() -> Path:
    return paths.log_path(NAME)


def running() -> tuple[int, list[str]] | None:
    """The background process of this stack (its pid and pieces), if one runs."""
    pid_file = paths.pid_path(NAME)
    proc = supervisor.running_pid_file(pid_file)
    if proc is None:
        return None
    try:
        names = [str(n) for n in json.loads(pid_file.read_text()).get("pieces", [])]
    except (OSError, ValueError, AttributeError):
        names = []
    return proc.pid, names


def spawn(pieces: Sequence[Piece]) -> int:
    """Start the detached process that builds and starts `pieces`; its pid. One already
    running for this stack is left to finish (its pid is returned)."""
    already = running()
    if already is not None:
        return already[0]
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    paths.pid_path(NAME).parent.mkdir(parents=True, exist_ok=True)
    names = [p.name for p in pieces]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.later", *names],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=paths.REPO_ROOT,
            env={**os.environ, "LINEAGE_HUB_STATE": str(paths.state_dir())},
            start_new_session=True,
        )
    supervisor.record(paths.pid_path(NAME), proc.pid, pieces=names)
    return proc.pid


def stop() -> bool:
    """End the background process (and the build it runs); True when one ran."""
    found = running()
    if found is None:
        return False
    pid = found[0]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    supervisor.wait_gone(pid)
    paths.pid_path(NAME).unlink(missing_ok=True)
    return True


#: Pieces whose command reads, when it starts, which data-plane pieces are up.
READ_ENDPOINTS_AT_START = ("operator", "gateway")


def finish(names: Sequence[str]) -> list[str]:
    """Build and start `names`, then restart the running pieces that read their
    endpoints at start. The lines said, in order."""
    reporter = progress.current()
    lines = supervisor.up(select(names), on_line=reporter.say)
    for piece in ALL:
        if piece.name in READ_ENDPOINTS_AT_START and supervisor.running(piece) is not None:
            supervisor.stop(piece)
            supervisor.up([piece])
            line = f"{piece.name}: restarted, it now reads {', '.join(names)}"
            reporter.say(line)
            lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    progress.use(progress.Reporter(sys.stdout, tty=False))
    # The compile yields to the run under way; the servers started after it do not.
    gocompile.niceness = NICE
    try:
        finish(names)
    except StackError as err:
        print(f"stack up (background) failed: {err}", flush=True)
        return 1
    finally:
        paths.pid_path(NAME).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
