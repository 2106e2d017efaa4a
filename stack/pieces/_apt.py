"""Install a server from Debian's packages for a piece whose build is that install."""

from __future__ import annotations

import os
from collections.abc import Callable

from stack.errors import StackError
from stack.piece import build_log, run_step
from stack.toolstreams import Apt


def apt_install(piece: str, package: str, what: str, installed: Callable[[], bool]) -> None:
    """`apt-get install package` (root only: anyone else is told the command to run),
    apt's status lines as the step's progress; fails unless `installed()` after it."""
    log = build_log(piece)
    if os.geteuid() != 0:
        raise StackError(
            piece,
            f"{what} is not installed and installing it needs root: apt-get install {package}",
            log,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_step(piece, "apt-get update", ["apt-get", "update"], log, env=env, reader=Apt())
    run_step(
        piece,
        f"installing {what} with apt-get",
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "-o",
            "APT::Status-Fd=1",  # dlstatus:/pmstatus: lines, the step's progress
            package,
        ],
        log,
        env=env,
        reader=Apt(),
    )
    if not installed():
        raise StackError(piece, f"apt-get installed {package} but {what} is not found", log)
