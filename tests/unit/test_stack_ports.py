"""Each stack's ports: chosen once per state dir, recorded there, read by every piece."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from stack import ports, supervisor
from stack.cli import stack_env
from stack.errors import StackError
from stack.pieces import jaeger, kafka, marquez
from stack.pieces.controlplane import KubeAPIServer, admin_kubeconfig
from stack.registry import ALL


@pytest.fixture(autouse=True)
def _own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's own registry of stacks (the machine's is /tmp/lineage-hub-stacks)."""
    monkeypatch.setenv("LINEAGE_HUB_STACKS", str(tmp_path / "stacks"))


def _free(port: int) -> bool:
    return ports.bindable(port)


@pytest.fixture
def defaults() -> dict[str, int]:
    """Two ports free at offsets 0, 100 and 200 (a stack of two servers)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + 201 < 65536 and all(_free(base + o + i) for o in (0, 100, 200) for i in (0, 1)):
            return {"api": base, "broker": base + 1}
    raise AssertionError("no free pair of ports found")


@pytest.fixture
def listening() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def _listen(port: int, held: list[socket.socket]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    held.append(sock)


def _live_piece(state: Path) -> None:
    """A pid file of the stack naming a live process (this test's own)."""
    (state / "pids").mkdir(parents=True)
    record = {"pid": os.getpid(), "started": supervisor._proc_start(os.getpid())}
    (state / "pids" / "etcd.pid").write_text(json.dumps(record))


def test_a_stack_beside_a_running_one_gets_the_next_offset(
    tmp_path: Path, defaults: dict[str, int]
) -> None:
    first = ports.choose(tmp_path / "a", defaults)
    assert first.offset == 0 and dict(first.ports) == defaults
    _live_piece(tmp_path / "a")  # one piece runs; nothing listens on the ports yet
    second = ports.choose(tmp_path / "b", defaults)
    assert second.offset == 100
    assert dict(second.ports) == {n: p + 100 for n, p in defaults.items()}
    assert ports.choose(tmp_path / "a", defaults) == first  # recorded, not chosen again
    assert json.loads((tmp_path / "b" / "ports.json").read_text())["offset"] == 100


def test_stacks_started_under_different_tmpdirs_see_each_other(
    tmp_path: Path, defaults: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ports are the machine's: a CI job or another shell with a TMPDIR of its own (and
    another user) sees the stacks already running, through the one registry."""
    monkeypatch.delenv("LINEAGE_HUB_STACKS")
    monkeypatch.setattr(ports, "REGISTRY", tmp_path / "machine")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "shell"))
    assert ports.choose(tmp_path / "a", defaults).offset == 0
    _live_piece(tmp_path / "a")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "ci-job"))
    assert ports.choose(tmp_path / "b", defaults).offset == 100
    assert (tmp_path / "machine").stat().st_mode & 0o7777 == 0o1777
    assert (tmp_path / "machine" / ".lock").stat().st_mode & 0o777 == 0o666


def test_a_stack_whose_up_is_under_way_holds_its_ports(
    tmp_path: Path, defaults: dict[str, int]
) -> None:
    """A cold first `up` builds for many minutes before anything listens."""
    with ports.starting(tmp_path / "a"):
        assert ports.choose(tmp_path / "a", defaults).offset == 0
        assert ports.choose(tmp_path / "b", defaults).offset == 100


def test_a_stack_that_is_down_holds_no_ports(tmp_path: Path, defaults: dict[str, int]) -> None:
    """The default stack left down on a machine does not push the next stack (CI's)
    off the defaults."""
    ports.choose(tmp_path / "a", defaults)
    assert ports.choose(tmp_path / "b", defaults).offset == 0


def test_a_port_another_program_listens_on_moves_the_stack_to_the_next_offset(
    tmp_path: Path, defaults: dict[str, int], listening: list[socket.socket]
) -> None:
    _listen(defaults["broker"], listening)
    assert ports.choose(tmp_path / "a", defaults).offset == 100


def test_a_deleted_stack_leaves_the_registry(tmp_path: Path, defaults: dict[str, int]) -> None:
    ports.choose(tmp_path / "a", defaults)
    _live_piece(tmp_path / "a")
    shutil.rmtree(tmp_path / "a")
    assert ports.choose(tmp_path / "c", defaults).offset == 0
    entries = [f for f in ports.registry_dir().iterdir() if not f.name.startswith(".")]
    assert {Path(f.read_text().strip()) for f in entries} == {tmp_path / "c"}


def test_recorded_ports_stay_even_when_another_program_took_one_meanwhile(
    tmp_path: Path, defaults: dict[str, int], listening: list[socket.socket]
) -> None:
    recorded = ports.choose(tmp_path / "a", defaults)
    _listen(defaults["api"], listening)
    # The certificates and data of the stack name its ports: `up` says who holds one.
    assert ports.choose(tmp_path / "a", defaults) == recorded


def test_a_state_dir_from_before_recorded_ports_keeps_the_defaults_it_runs_on(
    tmp_path: Path, defaults: dict[str, int], listening: list[socket.socket]
) -> None:
    (tmp_path / "a" / "pki").mkdir(parents=True)
    _listen(defaults["api"], listening)  # its own server, say
    assert ports.choose(tmp_path / "a", defaults).offset == 0
    assert ports.choose(tmp_path / "b", defaults).offset == 100


def test_an_unreadable_ports_file_is_named_with_the_fix(
    tmp_path: Path, defaults: dict[str, int]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ports.json").write_text('{"offset": "x"}')
    with pytest.raises(StackError) as err:
        ports.choose(tmp_path / "a", defaults)
    assert str(tmp_path / "a" / "ports.json") in str(err.value)
    assert "delete it to choose the ports again" in str(err.value)


def test_a_port_added_to_the_stack_later_takes_the_recorded_offset(
    tmp_path: Path, defaults: dict[str, int]
) -> None:
    (tmp_path / "a").mkdir()
    old = {"offset": 200, "ports": {"api": defaults["api"] + 200}}
    (tmp_path / "a" / "ports.json").write_text(json.dumps(old))
    assert ports.choose(tmp_path / "a", defaults)["broker"] == defaults["broker"] + 200


def _numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"(?<![\w.])(\d{4,5})(?![\w.])", text)}


def test_every_piece_config_and_endpoint_follows_the_recorded_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stack recorded at +100: no default port is left in any piece's command, config,
    kubeconfig or `stack env`, and every piece listens where the state says."""
    state = tmp_path / "state"
    monkeypatch.setenv("LINEAGE_HUB_STATE", str(state))
    state.mkdir()
    layout = ports.at_offset(100)
    (state / "ports.json").write_text(layout.to_json())
    for piece in ALL:
        assert piece.ports == tuple(layout[n] for n in piece.port_names), piece.name
    KubeAPIServer().prepare()  # the certificates and kubeconfigs, with the server's URL
    server = yaml.safe_load(admin_kubeconfig().read_text())["clusters"][0]["cluster"]["server"]
    assert server == f"https://127.0.0.1:{layout['kube-apiserver']}"
    texts = [
        json.dumps(stack_env()),
        yaml.safe_dump(jaeger.jaeger_config()),
        kafka._server_properties(tmp_path / "kafka"),
        yaml.safe_dump(marquez.marquez_config()),
    ]
    for piece in ALL:
        if not piece.server:
            continue
        try:
            launch = piece.command()
        except StackError:  # PostgreSQL's server binaries are not installed here
            continue
        texts.append(json.dumps([launch.argv, launch.env]))
    seen = set().union(*map(_numbers, texts))
    assert not seen & set(ports.DEFAULTS.values())
    assert set(layout.ports.values()) <= seen


def test_the_stack_ports_are_distinct_and_every_piece_names_known_ones() -> None:
    assert len(set(ports.DEFAULTS.values())) == len(ports.DEFAULTS)
    for piece in ALL:
        assert set(piece.port_names) <= set(ports.DEFAULTS), piece.name


def test_no_port_of_the_first_ten_stacks_lies_in_the_ephemeral_range() -> None:
    """The kernel picks the local port of any outgoing connection from the ephemeral
    range: a server port there is free one minute and taken the next (PostgreSQL's
    55432 was)."""
    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for offset in range(0, 10 * ports.STEP, ports.STEP):
        inside = {
            name: port
            for name, port in ports.at_offset(offset).ports.items()
            if port >= min(low, ports.EPHEMERAL_LOW)
        }
        assert not inside, f"at +{offset}: {inside}"


def test_no_integration_test_falls_back_to_a_default_stack_port() -> None:
    """A test reading a stack endpoint with a default (`.get("KAFKA_BOOTSTRAP",
    "127.0.0.1:9092")`) talks to whichever stack holds the defaults, not its own, when
    it runs on a second stack: endpoints come from the `stack` fixture's env."""
    defaults = "|".join(str(p) for p in ports.DEFAULTS.values())
    fallback = re.compile(r"""\.get\(\s*["'][A-Z_]+["'],\s*f?["'][^"']*:(""" + defaults + r")\b")
    root = Path(__file__).resolve().parents[1] / "integration"
    found = [
        f"{path.name}:{number}: {text.strip()}"
        for path in sorted(root.rglob("*.py"))
        for number, text in enumerate(path.read_text().splitlines(), 1)
        if fallback.search(text)
    ]
    assert not found, "\n".join(found)
