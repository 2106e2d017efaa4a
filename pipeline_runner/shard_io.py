"""Where a stage's shard reads and writes in the workspace, and how the shards of a
stage agree that it is done.

Shard `i` of `n` writes its part atomically (a temporary file renamed into place),
delivers its own span, then writes its result into the stage's ledger
(`<stage>.parts/.results-<stage run id>/`). The shard that finds every result there and
wins the exclusive create of `committed` (holding its index and the COMPLETE event,
the shards' results summed) reports that event, then marks it sent. A retry of that
shard finding the claim unmarked (its pod died before the event was delivered) resends
the very same event, which the stores take once. A shard that fails, or cannot deliver
its span when telemetry is required, writes no result, so no shard commits and the Job
fails: the next stage never starts and nothing reaches the sink (load, one pod, reads
every part or fails).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lineagehub.api.enums import StageName
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

if TYPE_CHECKING:
    from lineagehub.api import StageConfig

_SENT = "complete-sent"
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

    def complete(self) -> bool:
        """Whether every shard's result is in."""
        return all(self._entry(i).is_file() for i in range(self.count))

    def claim(self, index: int, event: bytes) -> bytes | None:
        """The COMPLETE event shard `index` is to send, for exactly one shard: `event`
        for the first to claim the commit; the claimed event for a retry of the claimant
        while it is not marked sent; None otherwise."""
        target = self.folder / "committed"
        tmp = target.with_name(f".committed.{index}.{os.getpid()}.tmp")
        tmp.write_bytes(f"{index}\n".encode() + event)
        try:
            os.link(tmp, target)  # exclusive, and the claim is whole once it is visible
        except FileExistsError:
            claimant, _, claimed = target.read_bytes().partition(b"\n")
            if int(claimant) != index or (self.folder / _SENT).exists():
                return None
            return claimed
        finally:
            tmp.unlink()
        return event

    def mark_sent(self) -> None:
        """The claimed COMPLETE is delivered: no retry sends it again."""
        (self.folder / _SENT).touch()

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


@dataclass
class Commit:
    """What the committing shard reports: the stage's summed result and its event."""

    total: StageResult
    event: bytes
    ledger: Ledger


def finish_shard(
    cfg: StageConfig,
    shard: Shard,
    result: StageResult,
    started: float,
    event_of: Callable[[StageResult], bytes],
) -> Commit | None:
    """After a shard succeeded and delivered its span: record it; when it is the one to
    commit, return the stage's summed result (with the error that fails it, if the sum
    says so) and the event to send (`event_of` the sum, or the one claimed before)."""
    ledger = Ledger.of(cfg)
    ledger.record(shard.index, result, started)
    if not ledger.complete():
        return None
    total = ledger.combined()
    if cfg.stage is StageName.EXTRACT and total.records_out == 0:
        total.error = (
            f"source {redact_uri(cfg.source.uri)} has no data rows (read in {shard.count} shards)"
        )
        total.error_kind = ErrorKind.INPUT_INVALID
    event = ledger.claim(shard.index, event_of(total))
    if event is None:
        return None
    if not total.ok:
        ledger.release()
    return Commit(total, event, ledger)
