"""Why a stage failed: a kind the operator reads, and one line a person can act on."""

from __future__ import annotations

import re
from enum import StrEnum

from lineagehub.datasets import redact_text

MAX_REASON = 1000


class ErrorKind(StrEnum):
    """`errorKind` in the termination message."""

    INPUT_NOT_FOUND = "InputNotFound"
    INPUT_INVALID = "InputInvalid"
    TRANSFORM_ERROR = "TransformError"
    QUALITY_CHECK_FAILED = "QualityCheckFailed"
    SINK_ERROR = "SinkError"
    SIZE_LIMIT_EXCEEDED = "SizeLimitExceeded"
    INTERNAL_ERROR = "InternalError"


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """`text` with its whitespace (newlines too) collapsed, cut to `limit` characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (polars errors carry hints below)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


class StageError(Exception):
    """A failure with a known cause. `str()` is the one-line reason: what failed, on which
    input, and how to fix it. A URI quoted in it is shown without its credentials."""

    def __init__(self, kind: ErrorKind, message: str, fix: str | None = None) -> None:
        self.kind = kind
        self.message = message
        self.fix = fix
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        text = self.message if not self.fix else f"{self.message}; fix: {self.fix}"
        return one_line(redact_text(text))
