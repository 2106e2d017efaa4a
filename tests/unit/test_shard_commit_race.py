"""Shards of one stage finishing at the same moment, in separate processes as their pods
are: exactly one commits (sends the stage's COMPLETE), whatever the interleaving, and
what it commits is every shard's result summed."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.synchronize import Barrier
from pathlib import Path

from lineagehub.api import (
    ParentRun,
    RunRef,
    SinkSpec,
    SourceSpec,
    StageConfig,
    StageName,
    TransformSpec,
    new_run_id,
)
from pipeline_runner.result import StageResult
from pipeline_runner.shard_io import Ledger, finish_shard
from pipeline_runner.shard_source import Shard

SHARDS = 6
ROUNDS = 25
WAIT = 60.0


def _config(tmp: Path, round_no: int) -> str:
    """One stage run of `SHARDS` shards (a new run id a round: a fresh ledger)."""
    cfg = StageConfig(
        run_id=new_run_id(),
        stage=StageName.TRANSFORM,
        pipeline_run=RunRef(namespace="test", name=f"race-{round_no}"),
        source=SourceSpec(uri=f"file://{tmp}/in.csv", format="csv"),
        transform=TransformSpec.model_validate({}),
        sink=SinkSpec(uri=f"file://{tmp}/out.parquet", format="parquet"),
        workspace=str(tmp / "ws"),
        openlineage_namespace="tests",
        openlineage_job="race.transform",
        parent=ParentRun(run_id=new_run_id(), namespace="tests", job="race"),
        shards=SHARDS,
        input_parts=SHARDS,
    )
    return cfg.to_env_value()


def _shard(index: int, configs: list[str], barrier: Barrier, out: mp.Queue[object]) -> None:
    """One pod a round: record a result of `index + 1` rows in, all at once with the
    other shards (the barrier), and say whether this shard committed and what."""
    for raw in configs:
        cfg = StageConfig.model_validate_json(raw)
        result = StageResult(StageName.TRANSFORM, records_in=index + 1, records_out=index + 1)
        barrier.wait(WAIT)
        commit = finish_shard(
            cfg, Shard(index, SHARDS), result, 0.0, lambda total: f"{total.records_in}".encode()
        )
        out.put((cfg.run_id, index, None if commit is None else commit.event))


def test_shards_finishing_at_once_commit_exactly_once_with_every_result(tmp_path: Path) -> None:
    configs = [_config(tmp_path, n) for n in range(ROUNDS)]
    ctx = mp.get_context("spawn")  # as pods are: no state shared but the workspace
    barrier = ctx.Barrier(SHARDS)
    out: mp.Queue[object] = ctx.Queue()
    pods = [ctx.Process(target=_shard, args=(i, configs, barrier, out)) for i in range(SHARDS)]
    for pod in pods:
        pod.start()
    try:
        answers = [out.get(timeout=WAIT) for _ in range(SHARDS * ROUNDS)]
    finally:
        for pod in pods:
            pod.join(WAIT)
    assert [pod.exitcode for pod in pods] == [0] * SHARDS
    every = sum(range(1, SHARDS + 1))
    for raw in configs:
        run_id = StageConfig.model_validate_json(raw).run_id
        mine = [a for a in answers if isinstance(a, tuple) and a[0] == run_id]
        assert len(mine) == SHARDS
        commits = [(index, event) for _, index, event in mine if event is not None]
        # One COMPLETE for the stage run, holding all six shards' rows.
        assert len(commits) == 1, commits
        ((index, event),) = commits
        assert event == f"{every}".encode()
        ledger = Ledger.of(StageConfig.model_validate_json(raw))
        assert (ledger.folder / "committed").read_bytes() == f"{index}\n".encode() + event
