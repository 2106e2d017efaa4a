"""`stack up --later`: which pieces wait for the background, what a first run says, and
one build of an artifact at a time across stacks."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stack import cli, later, paths, supervisor
from stack.cli import first_run_line
from stack.piece import build_lock, content_key
from stack.pieces import Helm, Jaeger, Kafka
from stack.pieces import _gobuild as gobuild
from stack.pieces.jaeger import JAEGER_VERSION
from stack.pieces.kafka import POM

WAIT = 10.0


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine on which nothing is built yet."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LINEAGE_HUB_CACHE", str(cache))
    return cache


def _put_jaeger_in_cache() -> Path:
    """What a finished Jaeger build leaves: the binary and the key of its inputs."""
    out = gobuild.binary_path("jaeger", JAEGER_VERSION)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"\x7fELF built by another stack")
    key = gobuild._key("jaeger", JAEGER_VERSION, "-s -w")
    out.with_name(out.name + ".key").write_text(key + "\n")
    return out


def test_a_piece_named_later_waits_only_while_it_needs_a_build() -> None:
    kafka, jaeger, helm = Kafka(), Jaeger(), Helm()
    now, deferred = later.split([kafka, jaeger, helm], ["jaeger"])
    assert deferred == [jaeger] and now == [kafka, helm]
    # Not named: built before the start as always, however long it takes.
    assert later.split([kafka, jaeger, helm], []) == ([kafka, jaeger, helm], [])
    _put_jaeger_in_cache()
    # In the cache: started with the rest (a start takes seconds), nothing in the background.
    assert later.split([kafka, jaeger, helm], ["jaeger"]) == ([kafka, jaeger, helm], [])


def test_the_first_line_says_what_builds_before_the_start_and_what_in_the_background() -> None:
    helm, jaeger = Helm(), Jaeger()
    said = first_run_line([helm], [jaeger])
    assert said is not None
    before, background = said.split("; then, in the background once the rest is up, ")
    assert "Kubernetes control plane" in before and "Jaeger" not in before
    assert background.startswith("Jaeger from its Go module")
    _put_jaeger_in_cache()
    assert "background" not in (first_run_line([helm], [jaeger]) or "")


def _waiting_on(lock: Path) -> bool:
    """Whether a process waits for the flock on `lock` (/proc/locks marks waiters `->`)."""
    inode = f":{lock.stat().st_ino} "
    return any(
        "->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines()
    )


def _built_while_second_waits(
    lock_name: str, second: Callable[[], object], put: Callable[[], object]
) -> object:
    """Hold the build lock `lock_name`, start `second` in a thread, and once it waits on
    the lock, `put` the finished artifact in the cache and let go: what `second` returned."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(second())
        except Exception as err:  # the test reports what it raised
            result.append(err)

    with build_lock(lock_name):
        waiter = threading.Thread(target=run)
        waiter.start()
        lock = paths.cache_dir() / "locks" / f"build-{lock_name}.lock"
        deadline = time.monotonic() + WAIT
        while not _waiting_on(lock) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _waiting_on(lock), "the second build did not wait for the lock"
        put()
    waiter.join(WAIT)
    (returned,) = result
    return returned


def test_a_build_under_way_elsewhere_is_waited_for_and_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stacks on one machine (CI beside a demo's background build) share the cache:
    the second waits for the first's build and takes its binary, never running Go itself
    (there is no `go` on this PATH: running it would fail)."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    returned = _built_while_second_waits(
        f"jaeger-{JAEGER_VERSION}",
        lambda: gobuild.go_build("jaeger", "jaeger", JAEGER_VERSION, "x", "-s -w"),
        _put_jaeger_in_cache,
    )
    assert returned == gobuild.binary_path("jaeger", JAEGER_VERSION)


def test_jars_fetched_elsewhere_meanwhile_are_waited_for_and_not_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a Maven fetch (Kafka's jars): the second stack waits for the first
    and finds the jars complete, never running `mvn` (not on this PATH: it would fail)."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    kafka = Kafka()

    def put_jars() -> None:
        lib = kafka.home / "lib"
        lib.mkdir(parents=True)
        (lib / kafka.main_jar.format(version=kafka.version)).write_bytes(b"PK fetched elsewhere")
        (kafka.home / ".complete").write_text(content_key(POM, extra=kafka.version) + "\n")

    assert not kafka.built()
    assert _built_while_second_waits(kafka.home.name, kafka.build, put_jars) is None
    assert kafka.built()


def test_status_shows_a_background_build_and_down_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stack status` names the piece being built in the background and its process;
    `stack down` ends that process (else it would start Jaeger into a stopped stack)."""
    monkeypatch.setenv("LINEAGE_HUB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("LINEAGE_HUB_STACKS", str(tmp_path / "stacks"))
    build = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        supervisor.record(paths.pid_path(later.NAME), build.pid, pieces=["jaeger"])
        assert later.running() == (build.pid, ["jaeger"])
        assert cli.main(["status"]) == 0
        rows = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines()}
        assert rows["jaeger"] == ["building", str(build.pid)]
        assert rows["kafka"][0] == "down"
        assert cli.main(["down"]) == 0
        assert "background build: stopped" in capsys.readouterr().out
        build.wait(WAIT)  # ended (down reaped it already: no exit status is left)
        assert not Path(f"/proc/{build.pid}").exists()
        assert later.running() is None and not paths.pid_path(later.NAME).exists()
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
