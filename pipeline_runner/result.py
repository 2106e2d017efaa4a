"""A stage's result: the termination message the operator reads, and what the lineage
events say about the datasets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from lineagehub.api.enums import StageName
from lineagehub.shard_quality import SAMPLE_SIZE
from pipeline_runner.errors import ErrorKind, one_line

#: Kubernetes keeps at most 4096 bytes of a termination message.
MAX_TERMINATION_BYTES = 4096
MAX_SAMPLE_CHARS = 80


@dataclass
class QualityOutcome:
    """One quality check as it ran on the transformed rows."""

    name: str
    type: str
    column: str
    severity: str
    success: bool
    failed_rows: int
    message: str
    sample: list[str] = field(default_factory=list)

    def wire(self, sample: int = SAMPLE_SIZE) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "column": self.column,
            "severity": self.severity,
            "success": self.success,
            "failedRows": self.failed_rows,
            "sample": [s[:MAX_SAMPLE_CHARS] for s in self.sample[:sample]],
        }


@dataclass
class DatasetInfo:
    """A dataset a stage read or wrote, with what the stage learnt about it."""

    namespace: str
    name: str
    uri: str
    schema: list[tuple[str, str]] | None = None
    row_count: int | None = None
    size: int | None = None
    null_counts: dict[str, int] | None = None
    column_lineage: dict[str, Any] | None = None


@dataclass
class StageResult:
    """What one stage did. Filled in as the stage goes, so a failure still reports what
    was known when it happened."""

    stage: StageName
    records_in: int | None = None
    records_out: int | None = None
    output_schema: list[tuple[str, str]] = field(default_factory=list)
    quality: list[QualityOutcome] = field(default_factory=list)
    bytes_read: int | None = None
    bytes_written: int | None = None
    duration_seconds: float | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    inputs: list[DatasetInfo] = field(default_factory=list)
    outputs: list[DatasetInfo] = field(default_factory=list)
    output_uri: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rejected(self) -> int | None:
        """Rows the transform dropped (filter, dropNulls, deduplicate)."""
        if self.stage is not StageName.TRANSFORM:
            return 0 if self.ok else None
        if self.records_in is None or self.records_out is None:
            return None
        return max(self.records_in - self.records_out, 0)

    def wire(self, sample: int = SAMPLE_SIZE, quality: int | None = None) -> dict[str, Any]:
        checks = self.quality if quality is None else self.quality[:quality]
        return {
            "stage": self.stage.value,
            "recordsIn": self.records_in,
            "recordsOut": self.records_out,
            "outputSchema": [{"name": n, "type": t} for n, t in self.output_schema],
            "quality": [q.wire(sample) for q in checks],
            "bytesWritten": self.bytes_written,
            "durationSeconds": (
                None if self.duration_seconds is None else round(self.duration_seconds, 3)
            ),
            "error": self.error,
            "errorKind": None if self.error_kind is None else self.error_kind.value,
        }

    def termination_message(self, limit: int = MAX_TERMINATION_BYTES) -> str:
        """The result as compact JSON of at most `limit` bytes. What goes first when it
        is too long: samples, then passing checks, then the schema, then failed checks of
        severity warn, then the error's length; the failed checks of severity fail (the
        ones that failed the stage) go last."""

        def encode(data: dict[str, Any]) -> str:
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

        def fits(data: dict[str, Any]) -> bool:
            return len(encode(data).encode()) <= limit

        for sample in (SAMPLE_SIZE, 2, 0):
            data = self.wire(sample)
            if fits(data):
                return encode(data)
        data["quality"] = [q for q in data["quality"] if not q["success"]]
        while data["outputSchema"] and not fits(data):
            data["outputSchema"].pop()
        blocking = [q for q in data["quality"] if q["severity"] == "fail"]
        warned = [q for q in data["quality"] if q["severity"] != "fail"]
        while warned and not fits({**data, "quality": blocking + warned}):
            warned.pop()
        data["quality"] = blocking + warned
        if not fits(data) and data["error"]:
            data["error"] = one_line(str(data["error"]), 512)
        while data["quality"] and not fits(data):
            data["quality"].pop()
        text = encode(data)
        if len(text.encode()) > limit:  # pragma: no cover - every field left is short
            text = encode({"stage": self.stage.value, "error": data["error"]})
        return text


def write_termination_message(path: str, result: StageResult, stderr: TextIO) -> None:
    """`result` where the kubelet reads it (a warning on `stderr` when it cannot), with
    the time the stage ended to the millisecond (`finishedAt`, UTC). Kubernetes keeps it
    in the pod's status: the operator's end of the stage, and of the run for its last
    stage, is this one time on every pass that reads it, so an end sent again is the
    same bytes."""
    ended = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    stamp = f',"finishedAt":"{ended}"}}'
    text = result.termination_message(MAX_TERMINATION_BYTES - len(stamp) + 1)
    try:
        Path(path).write_text(text[:-1] + stamp)
    except OSError as exc:
        print(f"warning: cannot write the termination message to {path}: {exc}", file=stderr)
