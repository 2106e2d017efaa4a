"""The TCP ports of one stack, chosen once and recorded in its state dir.

Every port a stack's servers listen on has a name and a default (`DEFAULTS`). The
first time a stack's ports are asked for (its first `stack up`), the lowest offset
(0, 100, 200, ...) at which every default + offset is free on 127.0.0.1 and claimed by
no other live stack is recorded in `<state dir>/ports.json`; from then on every
consumer (the pieces' configs and probes, the kubeconfigs, `stack env`, the tests'
fixtures, the demo) reads that file, and the stack keeps those ports for the life of
its state dir. A stack started while no other runs gets the defaults, as before; one
started beside a running stack (another `LINEAGE_HUB_STATE`: `.ci/run` while a demo
stack stays up, say) gets ports of its own.

Stacks with recorded ports are listed in one folder per machine,
`/tmp/lineage-hub-stacks/` (`$LINEAGE_HUB_STACKS` moves it), whatever a stack's
`TMPDIR` or state dir: ports are the machine's, so every stack must see the others. Another
stack's ports count as taken while it is live: a piece of it runs, or a `stack up` of
it is under way (it holds `<state dir>/up.lock`; a cold build takes many minutes
before anything listens). A stack that is down holds none: if a program took one of
its ports meanwhile, its `stack up` names that program. A state dir made before
ports were recorded keeps the defaults it ran on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from stack import paths
from stack.errors import StackError

#: Every port of a stack at offset 0, by name (one name per listening socket).
DEFAULTS: Mapping[str, int] = {
    "etcd": 12379,
    "etcd-peer": 12380,
    "kube-apiserver": 16443,
    "kube-controller-manager": 10257,
    "kube-scheduler": 10259,
    "kubelet": 10250,
    "kafka": 9092,
    "kafka-controller": 9093,
    "jaeger-otlp-grpc": 4317,
    "jaeger-otlp-http": 4318,
    "jaeger-query": 16686,
    "jaeger-query-grpc": 16685,
    "jaeger-metrics": 8888,
    "postgres": 15432,
    "marquez": 5000,
    "marquez-admin": 5001,
    "operator": 18080,
    "consume-lineage": 18081,
    "consume-otel": 18082,
    "gateway": 18083,
    "operator-metrics": 18084,
    "prometheus": 19090,
}
STEP = 100
#: Every default lies below Linux's ephemeral ports (32768-60999 unless a machine says
#: otherwise), from which the kernel hands out the local end of outgoing connections:
#: a port in that range may be taken, for a while, by any program's connection.
EPHEMERAL_LOW = 32768
FILE = "ports.json"


@dataclass(frozen=True)
class Layout:
    """One stack's ports: `offset` from the defaults, and each port by name."""

    offset: int
    ports: Mapping[str, int]

    def __getitem__(self, name: str) -> int:
        return self.ports[name]

    def to_json(self) -> str:
        return json.dumps({"offset": self.offset, "ports": dict(self.ports)}, indent=2) + "\n"


def at_offset(offset: int, defaults: Mapping[str, int] = DEFAULTS) -> Layout:
    return Layout(offset, {name: port + offset for name, port in defaults.items()})


def _read(state: Path, defaults: Mapping[str, int] = DEFAULTS) -> Layout | None:
    try:
        doc = json.loads((state / FILE).read_text())
        offset, ports = int(doc["offset"]), {str(k): int(v) for k, v in doc["ports"].items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise StackError(
            "stack",
            f"{state / FILE} is unreadable ({err}); delete it to choose the ports again",
        ) from err
    # A port added to the stack after this state dir was made: at the same offset.
    ports |= {name: port + offset for name, port in defaults.items() if name not in ports}
    return Layout(offset, ports)


#: The machine's one registry of stacks; not under `$TMPDIR`, which differs between
#: the shells, CI jobs and users that start stacks on the same ports.
REGISTRY = Path("/tmp/lineage-hub-stacks")


def registry_dir() -> Path:
    """One file per stack with recorded ports on this machine, naming its state dir."""
    return Path(os.environ.get("LINEAGE_HUB_STACKS") or REGISTRY)


def _shared_dir(path: Path) -> None:
    """Create the registry like /tmp itself (sticky, everyone's), so that the stacks of
    every user on the machine are listed in it."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            path.chmod(0o1777)
    lock = path / ".lock"
    if not lock.exists():
        lock.touch()
        with contextlib.suppress(PermissionError):
            lock.chmod(0o666)


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def starting(state: Path) -> contextlib.AbstractContextManager[None]:
    """Held by a `stack up` of the stack in `state` while it runs (shared: several may)."""
    return _locked(state / "up.lock", fcntl.LOCK_SH)


def _being_started(state: Path) -> bool:
    try:
        with (state / "up.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _claimed(reg: Path, state: Path) -> set[int]:
    """The ports of every other live stack in the registry; entries of deleted ones go."""
    from stack.supervisor import any_running  # the supervisor imports pieces, they us

    taken: set[int] = set()
    for entry in reg.iterdir():
        if entry.name.startswith("."):
            continue
        try:
            other = Path(entry.read_text().strip())
        except OSError:
            continue
        if other == state:
            continue
        try:
            layout = _read(other, {})  # what it recorded, nothing filled in
        except StackError:
            continue  # unreadable: its own `up` says so
        if layout is None:
            with contextlib.suppress(OSError):  # another user's entry: theirs to remove
                entry.unlink(missing_ok=True)
        elif _being_started(other) or any_running(other):
            taken.update(layout.ports.values())
    return taken


def bindable(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (or on every address at that port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _predates_ports(state: Path) -> bool:
    """A state dir that ran a stack before ports were recorded (it ran on the defaults)."""
    return any((state / sub).exists() for sub in ("pki", "data", "pids"))


def choose(state: Path, defaults: Mapping[str, int] = DEFAULTS) -> Layout:
    """The recorded layout of the stack in `state`, choosing and recording it if none is."""
    state = state.absolute()
    recorded = _read(state, defaults)
    if recorded is not None:
        return recorded
    reg = registry_dir()
    _shared_dir(reg)
    with _locked(reg / ".lock", fcntl.LOCK_EX):
        recorded = _read(state, defaults)  # another process may have chosen meanwhile
        if recorded is None:
            recorded = _first_free(reg, state, defaults)
            state.mkdir(parents=True, exist_ok=True)
            partial = state / (FILE + ".partial")
            partial.write_text(recorded.to_json())
            partial.replace(state / FILE)
        key = hashlib.sha256(str(state).encode()).hexdigest()[:16]
        (reg / key).write_text(f"{state}\n")
        return recorded


def _first_free(reg: Path, state: Path, defaults: Mapping[str, int]) -> Layout:
    if _predates_ports(state):
        return at_offset(0, defaults)
    claimed = _claimed(reg, state)
    highest = (65535 - max(defaults.values())) // STEP * STEP  # every port stays < 65536
    for offset in range(0, highest + 1, STEP):
        layout = at_offset(offset, defaults)
        if all(p not in claimed and bindable(p) for p in layout.ports.values()):
            return layout
    raise StackError(
        "stack",
        f"no offset up to {highest} leaves all {len(defaults)} of the stack's ports free "
        f"on 127.0.0.1 and unclaimed by the live stacks listed in {reg}",
    )


_cache: dict[Path, tuple[int, Layout]] = {}


def current() -> Layout:
    """The ports of the stack in `paths.state_dir()` (read once per change of its file)."""
    state = paths.state_dir()
    try:
        mtime = (state / FILE).stat().st_mtime_ns
    except FileNotFoundError:
        mtime = -1
    cached = _cache.get(state)
    if cached is not None and cached[0] == mtime and mtime != -1:
        return cached[1]
    layout = choose(state)
    _cache[state] = ((state / FILE).stat().st_mtime_ns, layout)
    return layout


def port(name: str) -> int:
    """This stack's port `name` (a key of `DEFAULTS`)."""
    return current()[name]
