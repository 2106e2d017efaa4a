"""Build what the stack needs before anything starts, downloads beside the compiles.

A first `stack up` builds the control plane and Helm (one Go build), Jaeger (Go)
and fetches Kafka's jars (Maven). A compile keeps both cores busy, a download
waits on the network: so the pieces are built one after another in this thread,
while a second thread fetches, in the same order, what each later piece's build
will need (its Go modules, its jars). A piece's build waits until its fetch has
ended; a fetch that failed is not an error here, the build itself runs it again
and says what went wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from stack import progress
from stack.errors import StackError
from stack.piece import Piece

ASIDE = "(meanwhile)"


@dataclass
class Fetches:
    """The background thread's work: one event per piece, set when its fetch ended."""

    pieces: Sequence[Piece]
    ended: dict[str, threading.Event] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ended = {p.name: threading.Event() for p in self.pieces}

    def run(self) -> None:
        with progress.aside(ASIDE):
            for piece in self.pieces:
                try:
                    piece.fetch()
                except StackError as err:
                    self.failed[piece.name] = str(err)
                finally:
                    self.ended[piece.name].set()

    def wait(self, piece: Piece) -> None:
        event = self.ended.get(piece.name)
        if event is not None:
            event.wait()


def _distinct(pieces: Sequence[Piece]) -> list[Piece]:
    """Pieces with something to build, one per build (the control plane's four pieces
    and Helm are one Go build)."""
    todo: list[Piece] = []
    seen: set[str] = set()
    for piece in pieces:
        key = piece.first_build or piece.name
        if key not in seen and not piece.built():
            seen.add(key)
            todo.append(piece)
    return todo


def build(pieces: Sequence[Piece], fetch_also: Sequence[Piece] = ()) -> dict[str, float]:
    """Build `pieces` (raising on the first failure) with the downloads of the later
    ones, and of `fetch_also` (optional pieces, built later by their own `up`),
    running meanwhile. Returns the seconds each build took, by piece name."""
    todo = _distinct(pieces)
    fetches = Fetches([*todo[1:], *_distinct(fetch_also)])
    worker = threading.Thread(target=fetches.run, name="stack-fetch", daemon=True)
    worker.start()
    took: dict[str, float] = {}
    try:
        for piece in todo:
            fetches.wait(piece)
            t0 = time.monotonic()
            piece.build()
            took[piece.name] = time.monotonic() - t0
    finally:
        # A failed build leaves the downloads running: they end with this process.
        if not any(p.name not in took for p in todo):
            worker.join()
    return took
