"""`lineage-hub stack up|down|status|env|logs PIECE`."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from stack import builds, later, paths, progress, supervisor
from stack import ports as stack_ports
from stack.errors import StackError
from stack.piece import Piece
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


def _go_caches() -> str:
    try:
        out = subprocess.run(
            ["go", "env", "GOCACHE", "GOMODCACHE"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"; Go keeps its own caches in {' and '.join(out)}" if out else ""


def _first_builds(pieces: Sequence[Piece]) -> list[str]:
    return list(dict.fromkeys(p.first_build for p in pieces if p.first_build and not p.built()))


def first_run_line(pieces: Sequence[Piece], deferred: Sequence[Piece] = ()) -> str | None:
    """What this `up` will build before anything starts (and, for `deferred`, in the
    background once the rest is up), how long that took on a 2-core machine and where
    it goes; None when everything is in the cache."""
    todo, later_todo = _first_builds(pieces), _first_builds(deferred)
    if not todo and not later_todo:
        return None
    what = f"building {'; '.join(todo)}" if todo else "nothing to build before the start"
    if later_todo:
        what += f"; then, in the background once the rest is up, {'; '.join(later_todo)}"
    return (
        f"first run on this machine: {what} (times measured on a 2-core machine); "
        f"cached in {paths.cache_dir()}{_go_caches()}; later runs reuse it"
    )


def _split(only: str | None) -> tuple[tuple[Piece, ...], tuple[Piece, ...]]:
    """The pieces `--only` names (all when None): those that must build, and those of
    the optional groups, which are tried and may fail."""
    names = only.split(",") if only else list(GROUPS)
    optional = [n for n in names if n in OPTIONAL_GROUPS and not only]
    required = [n for n in names if n not in optional]
    return (select(required) if required else ()), (select(optional) if optional else ())


def build_first(only: str | None, later_names: Sequence[str] = ()) -> list[Piece]:
    """Say what a first run builds, then build it (downloads beside the compiles), all
    but the pieces of `later_names` that need a build: those are returned, to be built
    and started in the background once the rest is up (`stack.later`)."""
    required, optional = _split(only)
    now, deferred = later.split(required, later_names)
    announce_and_build(now, deferred, optional)
    return deferred


def announce_and_build(
    pieces: Sequence[Piece], deferred: Sequence[Piece] = (), optional: Sequence[Piece] = ()
) -> None:
    """Say what a first run builds, then build `pieces` with the downloads of the later
    ones, of `deferred` and of `optional` running beside the compiles (`stack up` and
    the tests' `stack` fixture)."""
    # The optional groups are tried on every `up` (a missing Marquez artifact is not a
    # first run), so only the others are announced.
    first = first_run_line(pieces, deferred)
    if first:
        progress.current().say(first)
    # Deferred and optional pieces are fetched beside a first run's compiles; with
    # nothing to compile there is nothing to overlap (their own `up` fetches anyway).
    builds.build(pieces, fetch_also=[*deferred, *optional] if first else ())


def status_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns as wide as their widest cell (ports or versions of any length stay apart)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "".join(cell.ljust(w + 2) for cell, w in zip(row[:-1], widths, strict=True)) + row[-1]
        for row in rows
    ]


def resident_mib(pid: int) -> str:
    """A process's resident memory (VmRSS, what `ps` and `top` show) in MiB; - if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return f"{int(line.split()[1]) / 1024:.0f} MiB"
    except (OSError, ValueError, IndexError):
        pass
    return "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lineage-hub stack", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build what is missing and start the pieces (idempotent)")
    up.add_argument("--only", help="comma-separated pieces or groups (e.g. controlplane,kafka)")
    up.add_argument(
        "--later",
        default="",
        help="comma-separated pieces that, when they still need a build, are built and "
        "started in the background once the rest is up (`make demo`: jaeger)",
    )
    build = sub.add_parser("build", help="build what is missing, start nothing")
    build.add_argument("--only", help="comma-separated pieces or groups")
    down = sub.add_parser("down", help="stop the pieces")
    down.add_argument("--only")
    sub.add_parser("status", help="each piece: state, pid, resident memory, ports, version, log")
    sub.add_parser("env", help="print the endpoints as `export` lines")
    logs = sub.add_parser("logs", help="print a piece's log")
    logs.add_argument("piece")
    logs.add_argument("-n", "--lines", type=int, default=50)
    args = parser.parse_args(argv)

    if args.cmd == "build":
        t0 = time.monotonic()
        progress.use(progress.for_stdout())
        try:
            build_first(args.only)
        except StackError as err:
            print(f"stack build failed: {err}", file=sys.stderr)
            return 1
        print(f"stack build in {time.monotonic() - t0:.1f}s; cached in {paths.cache_dir()}")
        return 0
    if args.cmd == "up":
        t0 = time.monotonic()
        groups = args.only.split(",") if args.only else list(GROUPS)
        reporter = progress.for_stdout()
        progress.use(reporter)
        try:
            deferred = build_first(args.only, [n for n in args.later.split(",") if n])
        except StackError as err:
            print(f"stack up failed: {err}", file=sys.stderr)
            return 1
        for group in groups:
            try:
                pieces = [p for p in select([group]) if p not in deferred]
                supervisor.up(pieces, on_line=reporter.say)
            except StackError as err:
                if group in OPTIONAL_GROUPS and not args.only:
                    print(f"warning: going on without {group}: {err}", file=sys.stderr)
                    continue
                print(f"stack up failed: {err}", file=sys.stderr)
                return 1
        if deferred:
            builder = later.spawn(deferred)
            reporter.say(
                f"{', '.join(p.name for p in deferred)}: building in the background "
                f"(pid {builder}, compiling at nice {later.NICE}; log {later.log_path()}); "
                "it starts by itself when built (`lineage-hub stack status`)"
            )
        layout = stack_ports.current()
        where = f"ports +{layout.offset}" if layout.offset else "the default ports"
        print(
            f"stack up in {time.monotonic() - t0:.1f}s; state in {paths.state_dir()}; "
            f"{where} (gateway {layout['gateway']}, kube-apiserver {layout['kube-apiserver']})"
        )
        return 0
    if args.cmd == "down":
        if later.stop():
            print("background build: stopped")
        for line in supervisor.down(select(args.only.split(",") if args.only else None)):
            print(line)
        return 0
    if args.cmd == "status":
        rows = [("PIECE", "STATE", "PID", "RSS", "PORTS", "VERSION", "LOG")]
        background = later.running()
        for piece in ALL:
            proc = supervisor.running(piece)
            rss = "-"
            if not getattr(piece, "server", True):
                state, pid = "tool", "-"
            elif proc is None and background is not None and piece.name in background[1]:
                state, pid = "building", str(background[0])
            elif proc is None:
                state, pid = "down", "-"
            else:
                state, pid = ("ready" if piece.ready() else "starting"), str(proc.pid)
                rss = resident_mib(proc.pid)
            ports = ",".join(map(str, piece.ports)) or "-"
            version = piece.version or "-"
            rows.append((piece.name, state, pid, rss, ports, version, str(piece.log)))
        print("\n".join(status_table(rows)))
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
