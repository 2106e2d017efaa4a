"""The supervisor's failure rules, with real child processes (no servers needed)."""

from __future__ import annotations

import io
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import paths, progress, supervisor
from stack.cli import first_run_line, status_table
from stack.errors import StackError
from stack.piece import Launch, Piece, port_holder, port_open


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGE_HUB_STATE", str(tmp_path / "state"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server(Piece):
    """A real TCP server process: python's http.server on a free port."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.ready_timeout = 20

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def command(self) -> Launch:
        port = str(self.ports[0])
        return Launch([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", port])


class Crasher(Piece):
    name = "crasher"

    def command(self) -> Launch:
        return Launch([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])

    def ready(self) -> bool:
        return False


@pytest.fixture
def server() -> Iterator[Server]:
    piece = Server("web", _free_port())
    yield piece
    supervisor.stop(piece)


def test_up_is_idempotent_and_down_stops(server: Server) -> None:
    (line,) = supervisor.up([server])
    assert line.startswith("web: up in ")
    first = supervisor.running(server)
    assert first is not None
    assert supervisor.up([server]) == ["web: already up"]
    assert supervisor.running(server) == first
    assert supervisor.down([server]) == ["web: stopped"]
    assert supervisor.running(server) is None
    assert not port_open(server.ports[0])


def test_failed_piece_named_with_exit_code_and_log_and_earlier_pieces_stopped(
    server: Server,
) -> None:
    with pytest.raises(StackError) as err:
        supervisor.up([server, Crasher()])
    message = str(err.value)
    assert "[crasher]" in message
    assert "exited with code 3" in message
    assert "boom" in message
    assert str(paths.log_path("crasher")) in message
    assert supervisor.running(server) is None, "a failed up must leave nothing running"
    assert not port_open(server.ports[0])


def test_port_in_use_reports_the_port_and_its_holder() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(StackError) as err:
            supervisor.up([Server("web", port)])
    assert f"port {port} is already in use" in str(err.value)
    assert "pid" in str(err.value)


def test_the_holder_is_found_when_another_of_its_fds_closes_during_the_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A busy process (this one: threads open and close sockets) can close an fd between
    # the listing of its fds and the reading of one: the rest of its fds still count.
    readlink = Path.readlink
    me = f"/proc/{os.getpid()}/fd/"
    gone: list[str] = []

    def closing_first(fd: Path) -> Path:
        if str(fd).startswith(me) and not gone:
            gone.append(str(fd))
            raise FileNotFoundError(fd)
        return readlink(fd)

    monkeypatch.setattr(Path, "readlink", closing_first)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        found = port_holder(holder.getsockname()[1])
    assert gone and found.startswith(f"pid {os.getpid()} "), found


def test_stale_pid_file_is_not_mistaken_for_a_running_piece(server: Server) -> None:
    pid_file = paths.pid_path(server.name)
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text('{"pid": 1, "started": "not-the-real-start"}')
    assert supervisor.running(server) is None


def test_up_tells_each_line_as_it_happens_and_the_wait_for_readiness(server: Server) -> None:
    out = io.StringIO()
    progress.use(progress.Reporter(out, tty=False, stamp=lambda: "T"))
    told: list[str] = []
    try:
        lines = supervisor.up([server], on_line=told.append)
    finally:
        progress.use(progress.Reporter(None))
    assert told == lines and told[0].startswith("web: up in ")
    assert out.getvalue().startswith(
        "T web: started, waiting for it to answer: gives up after 20 s"
    )


def test_a_piece_that_never_answers_is_told_failed_with_its_timeout() -> None:
    out = io.StringIO()
    progress.use(progress.Reporter(out, tty=False, stamp=lambda: "T"))
    silent = Server("silent", _free_port())
    silent.ready = lambda: False  # type: ignore[method-assign]
    silent.ready_timeout = 1
    try:
        with pytest.raises(StackError, match="not ready after 1s"):
            supervisor.up([silent])
    finally:
        progress.use(progress.Reporter(None))
        supervisor.stop(silent)
    assert "T silent: started, waiting for it to answer: FAILED, not ready after 1 s" in (
        out.getvalue()
    )


class Built(Piece):
    def __init__(self, name: str, first_build: str, built: bool) -> None:
        self.name, self.first_build, self._built = name, first_build, built

    def built(self) -> bool:
        return self._built


def test_first_run_line_names_each_missing_build_once_and_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LINEAGE_HUB_CACHE", str(tmp_path / "cache"))
    plane = "the control plane (~20 min)"
    pieces = [
        Built("etcd", plane, built=False),
        Built("kube-apiserver", plane, built=False),  # one binary: said once
        Built("jaeger", "Jaeger (~11 min)", built=True),
        Built("kafka", "Kafka's jars (~1 min)", built=False),
        Built("operator", "", built=False),  # nothing to build
    ]
    line = first_run_line(pieces)
    assert line is not None
    assert line.startswith(
        "first run on this machine: building the control plane (~20 min); Kafka's jars (~1 min)"
        " (times measured on a 2-core machine); cached in " + str(tmp_path / "cache")
    )
    assert "Jaeger" not in line
    assert first_run_line([Built("jaeger", "Jaeger", built=True), Built("op", "", False)]) is None


def test_status_columns_stay_apart_whatever_their_width() -> None:
    rows = [
        ("PIECE", "STATE", "PID", "PORTS", "VERSION", "LOG"),
        ("jaeger", "ready", "8289", "4317,4318,16686", "v1.76.0", "/x/jaeger.log"),
        ("etcd", "down", "-", "12379", "v3.6.5", "/x/etcd.log"),
    ]
    table = status_table(rows)
    assert [row.split() for row in table] == [list(r) for r in rows]
    version_at = table[0].index("VERSION")
    assert table[1][version_at:].startswith("v1.76.0") and table[2][version_at:].startswith("v3")
