"""The supervisor's failure rules, with real child processes (no servers needed)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import paths, supervisor
from stack.errors import StackError
from stack.piece import Launch, Piece, port_open


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
        self.ports = (port,)
        self.ready_timeout = 20

    def command(self) -> Launch:
        port = str(self.ports[0])
        return Launch([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", port])


class Crasher(Piece):
    name = "crasher"
    ports = ()

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


def test_stale_pid_file_is_not_mistaken_for_a_running_piece(server: Server) -> None:
    pid_file = paths.pid_path(server.name)
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text('{"pid": 1, "started": "not-the-real-start"}')
    assert supervisor.running(server) is None
