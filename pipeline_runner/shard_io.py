"""Where a stage's shard reads and writes in the workspace, and how the shards of a
stage agree that it is done.

Shard `i` of `n` writes its part atomically (a temporary file renamed into place),
then its result into the stage's ledger (`<stage>.parts/.results-<stage run id>/`).
The shard that finds every result there and wins the exclusive create of `committed`
is the one that reports the stage's COMPLETE with the shards' results summed; every
other shard reports only its own span. A shard that fails writes no result, so no
shard commits and the Job fails: the next stage never starts and nothing reaches the
sink (load, one pod, reads every part or fails).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lineagehub.api import StageConfig, StageName
from lineagehub.api.shards import (
    COMPLETION_INDEX_ENV,
    part_path,
    parts_dir,
    shard_range,
)
from lineagehub.datasets import redact_uri
from pipeline_runner.errors import ErrorKind, StageError
from pipeline_runner.result import StageResult
from pipeline_runner.shard_results import combine, from_json, to_json
from pipeline_runner.shard_source import Shard

_STAGE_BEFORE = {StageName.TRANSFORM: StageName.EXTRACT, StageName.LOAD: StageName.TRANSFORM}


def current_shard(cfg: StageConfig, environ: Mapping[str, str] | None = None) -> Shard:
    """This pod's shard: `JOB_COMPLETION_INDEX` of an Indexed Job; 0 of 1 otherwise."""
    if cfg.shards == 1:
        return Shard(0, 1)
    raw = (os.environ if environ is None else environ).get(COMPLETION_INDEX_ENV, "")
    if not raw.isdigit() or not 0 <= int(raw) < cfg.shards:
        raise StageError(
            ErrorKind.INTERNAL_ERROR,
            f"{COMPLETION_INDEX_ENV} is {raw or 'not set'}, not a shard index below {cfg.shards}",
            "run a sharded stage as an Indexed Job (completionMode: Indexed)",
        )
    return Shard(int(raw), cfg.shards)


def output_path(cfg: StageConfig, shard: Shard) -> Path:
    """The part this shard writes (for one pod: `<stage>.parquet`)."""
    return Path(part_path(cfg.workspace, cfg.stage.value, shard.index, shard.count))


def input_paths(cfg: StageConfig, shard: Shard) -> tuple[list[Path], Path]:
    """(this shard's parts of the stage before, that stage's first part). The first part
    gives the schema to a shard that takes no part."""
    before = _STAGE_BEFORE[cfg.stage].value
    parts = [
        Path(part_path(cfg.workspace, before, i, cfg.input_parts)) for i in range(cfg.input_parts)
    ]
    mine = shard_range(len(parts), shard.count, shard.index)
    return parts[mine.start : mine.stop], parts[0]


@dataclass
class Ledger:
    """The results of one stage's shards, for one stage run."""

    folder: Path
    count: int

    @classmethod
    def of(cls, cfg: StageConfig) -> Ledger:
        folder = Path(parts_dir(cfg.workspace, cfg.stage.value)) / f".results-{cfg.run_id}"
        return cls(folder, cfg.shards)

    def _entry(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}.json"

    def record(self, index: int, result: StageResult, started: float) -> None:
        """This shard's result, written atomically (a retried shard replaces it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._entry(index)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{started!r}\n{time.time()!r}\n{to_json(result)}")
        tmp.replace(target)

    def claim(self) -> bool:
        """True for exactly one shard, once every shard's result is in."""
        if not all(self._entry(i).is_file() for i in range(self.count)):
            return False
        try:
            fd = os.open(self.folder / "committed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def combined(self) -> StageResult:
        """Every shard's result, summed."""
        results, starts, ends = [], [], []
        for i in range(self.count):
            started, finished, text = self._entry(i).read_text().split("\n", 2)
            starts.append(float(started))
            ends.append(float(finished))
            results.append(from_json(text))
        return combine(results, max(ends) - min(starts))

    def release(self) -> None:
        """Forget the claim, so that a retried shard can commit (after a failed commit)."""
        with contextlib.suppress(FileNotFoundError):
            (self.folder / "committed").unlink()


def finish_shard(
    cfg: StageConfig, shard: Shard, result: StageResult, started: float
) -> StageResult | None:
    """After a shard succeeded: record it; when it is the one to commit, return the
    stage's summed result (with the error that fails it, if the sum says so)."""
    ledger = Ledger.of(cfg)
    ledger.record(shard.index, result, started)
    if not ledger.claim():
        return None
    total = ledger.combined()
    if cfg.stage is StageName.EXTRACT and total.records_out == 0:
        total.error = (
            f"source {redact_uri(cfg.source.uri)} has no data rows (read in {shard.count} shards)"
        )
        total.error_kind = ErrorKind.INPUT_INVALID
        ledger.release()
    return total
