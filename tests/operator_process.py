"""An operator process of a test's (or a bench's) own: the stack's operator as the stack
runs it, but for chosen namespaces alone, with settings changed, or from another
source tree (an earlier commit's, for a baseline). Killed at the end, as a crash would
end it. The caller stops the stack's own operator meanwhile, if it would handle the
same runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from stack.paths import REPO_ROOT
from stack.registry import select
from tests.helpers import wait_until

LINEAGE_HUB = REPO_ROOT / ".venv" / "bin" / "lineage-hub"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def operator_process(
    namespaces: Sequence[str],
    log: Path,
    settings: Mapping[str, str] | None = None,
    source: Sequence[Path] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """The operator for `namespaces`, with `settings` over the stack operator's
    environment, its modules imported from `source` first when given (PYTHONPATH comes
    before the virtualenv's own paths); ready (its liveness endpoint answers) on entry."""
    (piece,) = select(["operator"])
    liveness = f"http://127.0.0.1:{_free_port()}/healthz"
    env = {**os.environ, **piece.command().env, **(settings or {})}
    if source:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in source)
    scope = [arg for ns in namespaces for arg in ("-n", ns)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(LINEAGE_HUB), "operator", *scope, f"--liveness={liveness}"],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _answers(liveness) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, log.read_text()[-3000:]
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
