"""A first `stack up` builds one piece after another while the later ones' downloads run."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest

from stack import builds, progress
from stack.errors import StackError
from stack.piece import Piece

WAIT = 10.0  # seconds a step may wait for another thread before the test fails


class Recorded(Piece):
    """A piece whose fetch and build write what they do in one shared journal."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal
        self.done = False
        self.first_build = f"{name} from source"

    def built(self) -> bool:
        return self.done

    def fetch(self) -> None:
        self.journal.append(f"fetch {self.name}")

    def build(self) -> None:
        self.journal.append(f"build {self.name}")
        self.done = True


class Failing(Recorded):
    def fetch(self) -> None:
        self.journal.append(f"fetch {self.name} fails")
        raise StackError(self.name, "artifact not found")


def test_later_pieces_download_while_the_first_compiles_and_build_after_their_fetch() -> None:
    journal: list[str] = []
    fetching, compiled = threading.Event(), threading.Event()

    class Compiling(Recorded):
        def build(self) -> None:
            assert fetching.wait(WAIT), "no download ran while the first piece compiled"
            super().build()
            compiled.set()

    class Downloading(Recorded):
        fetched = False

        def fetch(self) -> None:
            self.journal.append("fetch jaeger starts")
            fetching.set()
            assert compiled.wait(WAIT)  # a download that outlasts the compile
            self.fetched = True

        def build(self) -> None:
            assert self.fetched, "built before its download ended"
            super().build()

    took = builds.build([Compiling("controlplane", journal), Downloading("jaeger", journal)])
    assert set(took) == {"controlplane", "jaeger"}
    assert journal == ["fetch jaeger starts", "build controlplane", "build jaeger"]


def test_one_build_per_first_build_and_nothing_for_what_is_cached() -> None:
    journal: list[str] = []
    plane = [Recorded(n, journal) for n in ("etcd", "kube-apiserver")]
    for piece in plane:
        piece.first_build = "the control plane"
    cached = Recorded("kafka", journal)
    cached.done = True
    builds.build([*plane, cached])
    assert [e for e in journal if e.startswith("build")] == ["build etcd"]


def test_an_optional_piece_whose_fetch_fails_stops_nothing() -> None:
    journal: list[str] = []
    marquez = Failing("marquez", journal)
    builds.build([Recorded("kafka", journal)], fetch_also=[marquez])
    assert "fetch marquez fails" in journal and "build kafka" in journal
    assert not marquez.done  # its own `up` builds it, and says why it cannot


@pytest.fixture
def said() -> Iterator[io.StringIO]:
    out = io.StringIO()
    progress.use(progress.Reporter(out, tty=True, width=lambda: 200))
    yield out
    progress.use(progress.Reporter(None))


def test_steps_of_a_background_thread_are_said_above_the_moving_line(said: io.StringIO) -> None:
    step = progress.current().step("building the control plane")

    def fetch() -> None:
        with progress.aside("(meanwhile)"):
            progress.current().step("kafka: fetching jars").done("12 jars")

    worker = threading.Thread(target=fetch)
    worker.start()
    worker.join(WAIT)
    step.done()
    text = said.getvalue()
    lines = text.split("\n")
    assert any(line.endswith("(meanwhile) kafka: fetching jars, 0 s") for line in lines)
    assert any(
        line.endswith("(meanwhile) kafka: fetching jars: done, 12 jars in 0 s") for line in lines
    )
    # The terminal line of the foreground step is drawn again after each said line.
    after = text.split("kafka: fetching jars: done, 12 jars in 0 s\n", 1)[1]
    assert after.startswith("\r\x1b[Kbuilding the control plane")
