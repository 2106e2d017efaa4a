"""A stage's end as its pod says it: the runner writes the time it ended, to the
millisecond, in its termination message (which Kubernetes keeps in the pod's status);
the operator reads it as the stage's end, a sharded stage's from its last shard. Every
pass reading the pod reads the same end, so the run's end made from it is sent again
as the same bytes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from lineagehub_operator.observed import StageResult as Seen
from lineagehub_operator.shards import combined_outcome

from lineagehub.api.pipelinerun import StageName
from pipeline_runner.errors import ErrorKind
from pipeline_runner.result import (
    MAX_TERMINATION_BYTES,
    StageResult,
    write_termination_message,
)


def _written(result: StageResult, tmp_path: Path) -> str:
    path = tmp_path / "termination-log"
    write_termination_message(str(path), result, io.StringIO())
    return path.read_text()


def test_the_runner_says_when_it_ended_and_the_operator_reads_it(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    text = _written(StageResult(stage=StageName.LOAD, records_in=3, records_out=3), tmp_path)
    after = datetime.now(UTC)
    seen = Seen.parse(text)
    assert seen is not None and seen.finished_at is not None
    assert (seen.records_in, seen.records_out) == (3, 3)
    assert seen.finished_at.microsecond % 1000 == 0, "to the millisecond"
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= seen.finished_at
    assert seen.finished_at <= after
    assert json.loads(text)["finishedAt"].endswith("Z")


def test_a_full_termination_message_keeps_its_end_within_4096_bytes(tmp_path: Path) -> None:
    """A result that alone just fits in what Kubernetes keeps: with its end added it is
    cut to fit, not cut off by the kubelet (which would leave no JSON to read)."""
    bare = StageResult(stage=StageName.TRANSFORM, error="", error_kind=ErrorKind.INTERNAL_ERROR)
    room = MAX_TERMINATION_BYTES - len(bare.termination_message().encode())
    full = StageResult(
        stage=StageName.TRANSFORM, error="e" * (room - 2), error_kind=ErrorKind.INTERNAL_ERROR
    )
    assert len(full.termination_message().encode()) > MAX_TERMINATION_BYTES - 4
    text = _written(full, tmp_path)
    assert len(text.encode()) <= MAX_TERMINATION_BYTES
    seen = Seen.parse(text)
    assert seen is not None and seen.finished_at is not None
    assert seen.error is not None and seen.error.startswith("eee")


def test_a_time_the_operator_cannot_read_is_no_end() -> None:
    for value in ("yesterday", 1764561600, "2026-12-01T04:00:05", None):
        seen = Seen.parse(json.dumps({"recordsIn": 1, "finishedAt": value}))
        assert seen is not None and seen.finished_at is None, value
    seen = Seen.parse('{"finishedAt": "2026-12-01T05:00:05.120+01:00"}')
    assert seen is not None
    assert seen.finished_at == datetime(2026, 12, 1, 4, 0, 5, 120_000, UTC)


def _shard(index: int, message: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            "creationTimestamp": "2026-12-01T04:00:00Z",
        },
        "status": {
            "containerStatuses": [{"state": {"terminated": {"message": json.dumps(message)}}}]
        },
    }


def test_a_sharded_stage_ends_with_its_last_shard() -> None:
    ends = ["2026-12-01T04:00:07.210Z", "2026-12-01T04:00:09.004Z", "2026-12-01T04:00:08.999Z"]
    pods = [
        _shard(i, {"recordsIn": 1, "recordsOut": 1, "finishedAt": e}) for i, e in enumerate(ends)
    ]
    message, reason = combined_outcome(pods, 3)
    seen = Seen.parse(message)
    assert reason is None and seen is not None
    assert seen.finished_at == datetime(2026, 12, 1, 4, 0, 9, 4_000, UTC)
    # A shard that did not say: the stage's end is not known from its pods.
    pods[1] = _shard(1, {"recordsIn": 1, "recordsOut": 1})
    seen = Seen.parse(combined_outcome(pods, 3)[0])
    assert seen is not None and seen.finished_at is None


def test_a_finished_at_no_clock_can_hold_is_no_end_and_no_crash() -> None:
    """A pod's message is outside bytes: an offset that moves the time past year 1 or
    9999 (OverflowError in astimezone), a naive time or a non-time is read as no end."""
    for said in (
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-12-01T04:00:00",
        7,
    ):
        seen = Seen.parse(json.dumps({"recordsIn": 1, "recordsOut": 1, "finishedAt": said}))
        assert seen is not None and seen.finished_at is None
        assert seen.records_out == 1
