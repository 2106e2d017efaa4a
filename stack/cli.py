"""`lineage-hub stack up|down|status|env|logs PIECE`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from stack import paths, supervisor
from stack.errors import StackError
from stack.registry import ALL, GROUPS, OPTIONAL_GROUPS, select


def _env() -> dict[str, str]:
    merged: dict[str, str] = {}
    for piece in ALL:
        for key, value in piece.env().items():
            if key == "PATH" and "PATH" in merged:
                extra = value.split(os.pathsep)[0]
                merged["PATH"] = f"{extra}{os.pathsep}{merged['PATH']}"
            else:
                merged[key] = value
    merged["LINEAGE_HUB_STATE"] = str(paths.state_dir())
    return merged


def stack_env() -> dict[str, str]:
    """The endpoints of the stack as environment variables."""
    return _env()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lineage-hub stack", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build what is missing and start the pieces (idempotent)")
    up.add_argument("--only", help="comma-separated pieces or groups (e.g. controlplane,kafka)")
    down = sub.add_parser("down", help="stop the pieces")
    down.add_argument("--only")
    sub.add_parser("status", help="each piece: state, ports, pid, version, log")
    sub.add_parser("env", help="print the endpoints as `export` lines")
    logs = sub.add_parser("logs", help="print a piece's log")
    logs.add_argument("piece")
    logs.add_argument("-n", "--lines", type=int, default=50)
    args = parser.parse_args(argv)

    if args.cmd == "up":
        t0 = time.monotonic()
        groups = args.only.split(",") if args.only else list(GROUPS)
        for group in groups:
            try:
                for line in supervisor.up(select([group])):
                    print(line, flush=True)
            except StackError as err:
                if group in OPTIONAL_GROUPS and not args.only:
                    print(f"warning: going on without {group}: {err}", file=sys.stderr)
                    continue
                print(f"stack up failed: {err}", file=sys.stderr)
                return 1
        print(f"stack up in {time.monotonic() - t0:.1f}s; state in {paths.state_dir()}")
        return 0
    if args.cmd == "down":
        for line in supervisor.down(select(args.only.split(",") if args.only else None)):
            print(line)
        return 0
    if args.cmd == "status":
        print(f"{'PIECE':<26}{'STATE':<9}{'PID':<9}{'PORTS':<14}{'VERSION':<12}LOG")
        for piece in ALL:
            proc = supervisor.running(piece)
            if not getattr(piece, "server", True):
                state, pid = "tool", "-"
            elif proc is None:
                state, pid = "down", "-"
            else:
                state, pid = ("ready" if piece.ready() else "starting"), str(proc.pid)
            ports = ",".join(map(str, piece.ports)) or "-"
            print(f"{piece.name:<26}{state:<9}{pid:<9}{ports:<14}{piece.version:<12}{piece.log}")
        return 0
    if args.cmd == "env":
        for key, value in _env().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if args.cmd == "logs":
        names = [p.name for p in ALL]
        if args.piece not in names:
            print(f"unknown piece {args.piece!r}; known: {', '.join(names)}", file=sys.stderr)
            return 2
        log = paths.log_path(args.piece)
        if not log.exists():
            print(f"no log yet at {log}", file=sys.stderr)
            return 1
        print("\n".join(log.read_text(errors="replace").splitlines()[-args.lines :]))
        return 0
    return 2
