"""The contract every stack piece fulfils, and helpers the pieces share.

A piece is one server (etcd, kube-apiserver, Kafka, Marquez, ...). The
supervisor calls, in order: `build()` (idempotent, cached outside the clone),
`prepare()` (one-time set-up of its state dir: certificates, initdb, storage
format), `command()` (the foreground process it runs), `ready()` (polled until
True), then `after_ready()` (e.g. create topics). `env()` contributes the
variables `lineage-hub stack env` prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stack import paths, progress
from stack import ports as stack_ports
from stack.errors import StackError
from stack.toolstreams import Lines, StreamReader


@dataclass
class Launch:
    """How to start a piece's foreground process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None  # run as this user (PostgreSQL refuses root)


class Piece:
    """Base class: override what the server needs."""

    name: str = ""
    version: str = ""
    #: Names (keys of `stack.ports.DEFAULTS`) of the ports it listens on, probed by
    #: `ready()` and checked free before a start.
    port_names: tuple[str, ...] = ()
    ready_timeout: float = 120.0
    # False for a tool (Helm) or an in-process store (chdb): the supervisor only
    # builds and prepares it, and never calls command()/ready().
    server: bool = True
    stop_timeout: float = 20.0
    stop_signal: signal.Signals = signal.SIGTERM  # PostgreSQL wants SIGINT (fast shutdown)
    #: What `build()` makes on a machine without the cache, and what that took on a
    #: 2-core machine, for the first line of a first `stack up`.
    first_build: str = ""

    def built(self) -> bool:
        """Whether `build()` has nothing to do (its artifacts are in the cache)."""
        return True

    def fetch(self) -> None:
        """Download what `build()` needs (its network part), so that it can run while
        another piece compiles; no-op when cached or when there is nothing to fetch."""

    def build(self) -> None:
        """Make the binaries/jars available in the cache (no-op when cached)."""

    def prepare(self) -> None:
        """One-time set-up of the state dir; must be idempotent."""

    def command(self) -> Launch:
        raise NotImplementedError

    def ready(self) -> bool:
        """True once the server answers; polled by the supervisor."""
        return all(port_open(p) for p in self.ports)

    def after_ready(self) -> None:
        """Work to do once the server is up (idempotent)."""

    def after_stop(self) -> None:
        """Clean-up after `down` (e.g. processes the piece started that outlive it)."""

    def env(self) -> dict[str, str]:
        """Variables for `lineage-hub stack env`."""
        return {}

    @property
    def ports(self) -> tuple[int, ...]:
        """This stack's numbers for `port_names` (recorded in its state dir)."""
        return tuple(stack_ports.port(name) for name in self.port_names)

    @property
    def log(self) -> Path:
        return paths.log_path(self.name)

    @property
    def data(self) -> Path:
        return paths.data_path(self.name)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers 200 (readiness probes of the stack's servers)."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def port_holder(port: int) -> str:
    """Describe which process listens on a TCP port (best effort, from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    if not inodes:
        return "unknown process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:  # one fd closed meanwhile must not hide the rest of its process
                target = str(fd.readlink())
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    return f"pid {proc.name} ({cmd.strip()[:120]})"
            except OSError:
                continue
    return "a process this user cannot see"


def run_step(
    piece: str,
    step: str,
    argv: list[str],
    log: Path,
    *,
    reader: StreamReader | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> None:
    """Run one build/set-up command, told as a progress step with the figures `reader`
    reads from its output (else its last line); on failure name the step and its log."""
    tool = argv[0]
    if shutil.which(tool) is None and not Path(tool).exists():
        raise StackError(piece, f"{step}: required tool {tool!r} is not installed", log)
    reader = reader or Lines()
    with progress.current().step(f"{piece}: {step}") as told:
        code = progress.run(argv, reader, told, log, cwd=cwd, env=env, stdin=stdin)
        if code != 0:
            raise StackError(piece, f"{step} failed with exit code {code}", log)
        told.detail = reader.detail() if not isinstance(reader, Lines) else ""


def content_key(*files: Path, extra: str = "") -> str:
    """A short hash of build inputs, used to key cached artifacts."""
    digest = hashlib.sha256(extra.encode())
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def build_log(name: str) -> Path:
    """Build logs live in the cache: builds outlive any one stack."""
    return paths.cache_dir() / "logs" / f"build-{name}.log"


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """Held while `name` is built into the cache: a second stack (CI beside a demo, or a
    demo's background build) building the same artifact waits for the first, then finds
    it built, instead of writing the same files at once."""
    path = paths.cache_dir() / "locks" / f"build-{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
