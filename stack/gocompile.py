"""One Go build with its progress: `go list` plans it, `go build -json -v` does it.

`go list -deps` with the build's own flags names every package the build needs
and, through `Stale`, those not in the build cache (downloading the modules on
the way: `go: downloading` lines); `go build -json -v` then names each package as
it compiles it. The step shows `412/1,950 packages compiled` from those two.
Neither -json nor -v nor the `go list` changes what is built or its cache keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from stack import progress
from stack.errors import StackError
from stack.toolstreams import GO_LIST_FORMAT, GoBuild, GoPlan

#: Niceness of the Go commands (`stack.later` raises it: its build runs beside a run
#: that must not wait for it, while the servers it then starts run at the usual one).
niceness = 0


def _go(*args: str) -> list[str]:
    return [*(["nice", "-n", str(niceness)] if niceness else []), "go", *args]


def go_plan(
    piece: str,
    what: str,
    *,
    packages: Sequence[str],
    flags: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    log: Path,
) -> GoPlan:
    """`go list -deps` of what a build of `packages` needs, downloading the modules it
    lacks on the way (a build's network part, which can run while another compiles)."""
    plan = GoPlan()
    with progress.current().step(f"{what}: resolving packages and downloading modules") as step:
        code = progress.run(
            _go("list", *flags, "-deps", "-f", GO_LIST_FORMAT, *packages),
            plan,
            step,
            log,
            cwd=cwd,
            env=env,
        )
        if code != 0:
            named = " ".join(packages)
            raise StackError(piece, f"go list of {named} failed with exit code {code}", log)
        step.detail = (
            f"{plan.downloads.detail() + ', ' if plan.downloads.modules else ''}"
            f"{len(plan.to_compile):,} of {len(plan.packages):,} packages to compile"
        )
    with log.open("a") as text:
        text.write(f"# plan: {len(plan.to_compile)} of {len(plan.packages)} packages to compile\n")
    return plan


def go_build(
    piece: str,
    what: str,
    *,
    packages: Sequence[str],
    flags: Sequence[str],
    out: Path,
    cwd: Path,
    env: dict[str, str],
    log: Path,
) -> GoBuild:
    """`go build FLAGS -o OUT PACKAGES...` in `cwd`, told as `what`; raise naming the log.

    With several main packages OUT is a folder (it must end with a slash or exist) and
    each binary is named after its package's last path element; the packages they share
    are compiled once."""
    plan = go_plan(piece, what, packages=packages, flags=flags, cwd=cwd, env=env, log=log)
    build = GoBuild(to_compile=set(plan.to_compile))
    target = f"{out}{os.sep}" if len(packages) > 1 else str(out)
    with progress.current().step(what) as step:
        code = progress.run(
            _go("build", "-json", "-v", *flags, "-o", target, *packages),
            build,
            step,
            log,
            cwd=cwd,
            env=env,
        )
        if code != 0:
            where = f" in {', '.join(build.failed)}" if build.failed else ""
            raise StackError(piece, f"go build failed{where} (exit code {code})", log)
        step.detail = f"{len(build.compiled):,} packages compiled and linked"
    return build
