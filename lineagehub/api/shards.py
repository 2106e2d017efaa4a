"""Sharded stages: which shard takes which input, where shards leave their parts, and
the ids that tie a stage's shards together in lineage and in the trace.

A sharded stage runs as an Indexed Job: pod `i` of `n` (`JOB_COMPLETION_INDEX`) takes
a contiguous run of the input's units (files of a glob, row groups of a Parquet file,
byte ranges of a text file, or the parts the stage before left), so concatenating the
shards' outputs in index order gives the rows in the order one pod would have read them.
The operator and the runner both import this module: standard library only.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

#: The environment variable the Job controller sets on each pod of an Indexed Job.
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
#: Most shards a stage may have (pods of one Indexed Job).
MAX_PARALLELISM = 64


def shard_range(units: int, shards: int, index: int) -> range:
    """The units shard `index` of `shards` takes: contiguous, every unit in exactly one
    shard, sizes differing by at most one. More shards than units leaves some empty."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    if not 0 <= index < shards:
        raise ValueError(f"shard index {index} is outside 0..{shards - 1}")
    if units < 0:
        raise ValueError(f"units cannot be negative, not {units}")
    return range(index * units // shards, (index + 1) * units // shards)


def byte_range(start: int, end: int, shards: int, index: int) -> tuple[int, int]:
    """The bytes `[a, b)` of `[start, end)` that shard `index` of `shards` owns: a line
    belongs to the shard whose range holds its first byte."""
    covered = shard_range(end - start, shards, index)
    return start + covered.start, start + covered.stop


def parts_dir(workspace: str, stage: str) -> PurePosixPath:
    """The folder of a sharded stage's parts in the run's workspace."""
    return PurePosixPath(workspace) / f"{stage}.parts"


def part_path(workspace: str, stage: str, index: int, count: int) -> str:
    """The Parquet part shard `index` of `count` leaves; one pod's output is the single
    file `<stage>.parquet`. The count is in the name, so parts of a run with another
    shard count are never taken for this one's."""
    if count == 1:
        return str(PurePosixPath(workspace) / f"{stage}.parquet")
    return str(parts_dir(workspace, stage) / f"part-{index:05d}-of-{count:05d}.parquet")


def part_paths(workspace: str, stage: str, count: int) -> list[str]:
    """Every part of a stage that ran in `count` shards, in index order."""
    return [part_path(workspace, stage, i, count) for i in range(count)]


def stage_span_id(trace_id: str, stage_run_id: str) -> str:
    """The span id of a sharded stage's span: its shards' spans are its children and the
    operator exports it when the Job ends, so every party derives the same id."""
    digest = hashlib.sha256(f"{trace_id}/{stage_run_id}/stage".encode()).hexdigest()
    span_id = digest[:16]
    return span_id if span_id != "0" * 16 else "0" * 15 + "1"


def shard_traceparent(traceparent: str, stage_run_id: str) -> str:
    """The traceparent a shard's span continues: the run's trace, the stage span as parent."""
    _, trace_id, _, flags = traceparent.split("-")
    return f"00-{trace_id}-{stage_span_id(trace_id, stage_run_id)}-{flags}"
