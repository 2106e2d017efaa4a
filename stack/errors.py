"""Errors the stack reports to a person: which piece, what happened, where the log is."""

from __future__ import annotations

from pathlib import Path


class StackError(Exception):
    """A stack step failed; the message names the piece and the log to read."""

    def __init__(self, piece: str, what: str, log: Path | None = None) -> None:
        self.piece = piece
        self.what = what
        self.log = log
        where = f" (log: {log})" if log else ""
        super().__init__(f"[{piece}] {what}{where}")
