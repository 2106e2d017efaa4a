"""Rows/s of a sharded run at 1, 2 and 4 shards, on generated orders.

    nice -n 10 python bench/bench_shards.py [--rows 4000000] [--shards 1 2 4] [--repeat 3]

Each stage runs as its pods do on the local stack: one `lineage-hub stage <stage>`
process per shard, all started at once with their JOB_COMPLETION_INDEX (extract and
transform sharded, load one process that commits the parts), lineage and telemetry
to the console (captured), no Kafka and no API server, so the figure is the data
work and the processes' start-up, not the control plane. The transform is
examples/pipelinerun.yaml's without deduplicate and the unique check (a sharded
transform refuses them). The baseline is the 1-shard run in the same invocation;
shard counts run interleaved `--repeat` times so they share the machine's load, and
the median wall time (all three stages) gives rows/s and the ratio to the baseline.
On a 2-core machine expect no gain past 2 shards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lineagehub.api import (
    STAGE_CONFIG_ENV,
    ParentRun,
    RunRef,
    SinkSpec,
    SourceSpec,
    StageConfig,
    StageName,
    TransformSpec,
    new_run_id,
)
from lineagehub.api.shards import COMPLETION_INDEX_ENV

ROOT = Path(__file__).resolve().parent.parent
STAGE = str(Path(sys.executable).parent / "lineage-hub")


def transform() -> TransformSpec:
    spec = yaml.safe_load((ROOT / "examples" / "pipelinerun.yaml").read_text())["spec"]
    body = spec["transform"]
    body.pop("deduplicate")
    body["quality"] = [q for q in body["quality"] if q["type"] != "unique"]
    return TransformSpec.model_validate(body)


def generate(path: Path, rows: int) -> None:
    i = pl.col("i")
    pl.LazyFrame({"i": pl.int_range(0, rows, eager=True)}).select(
        order_id=i,
        customer=pl.format("customer{}", (i % 26).cast(pl.String)),
        amount=(i % 1000).cast(pl.Float64) * 1.25,
        currency=(i % 3).replace_strict({0: "EUR", 1: "USD", 2: "GBP"}, return_dtype=pl.String),
        status=pl.when(i % 10 == 0).then(pl.lit("cancelled")).otherwise(pl.lit("completed")),
        created_at=pl.lit("2026-11-30T10:00:00"),
    ).sink_csv(path)


def config(
    stage: StageName, source: Path, work: Path, shards: int, parts: int, spec: TransformSpec
) -> StageConfig:
    return StageConfig(
        run_id=new_run_id(),
        stage=stage,
        pipeline_run=RunRef(namespace="bench", name="shards"),
        source=SourceSpec(uri=f"file://{source}", format="csv"),
        transform=spec,
        sink=SinkSpec(uri=f"file://{work / 'out.parquet'}", format="parquet"),
        workspace=str(work / "ws"),
        openlineage_namespace="bench",
        openlineage_job=f"shards.{stage.value}",
        parent=ParentRun(run_id=new_run_id(), namespace="bench", job="shards"),
        shards=shards,
        input_parts=parts,
    )


def run(source: Path, work: Path, shards: int, spec: TransformSpec) -> float:
    """Wall seconds of the three stages, each stage's shards as concurrent processes."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.perf_counter()
    parts = 1
    for stage in StageName:
        count = 1 if stage is StageName.LOAD else shards
        cfg = config(stage, source, work, count, parts, spec).to_env_value()
        procs = [
            subprocess.Popen(
                [STAGE, "stage", stage.value, "--emit", "console"],
                env={
                    **os.environ,
                    STAGE_CONFIG_ENV: cfg,
                    COMPLETION_INDEX_ENV: str(i),
                    "LINEAGEHUB_TERMINATION_LOG": str(work / f"term-{stage.value}-{i}"),
                },
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(count)
        ]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"{stage.value} shard failed: {err.decode()[-2000:]}")
        parts = count
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    counts = sorted(set([1, *args.shards]))
    spec = transform()
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        source = Path(tmp) / "orders.csv"
        generate(source, args.rows)
        size = source.stat().st_size
        print(f"{args.rows:,} rows, {size / 2**20:.0f} MiB CSV, {os.cpu_count()} CPUs")
        times: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(args.repeat):
            for n in counts:
                times[n].append(run(source, Path(tmp) / f"run-{n}", n, spec))
        loaded = {n: pl.scan_parquet(Path(tmp) / f"run-{n}" / "out.parquet") for n in counts}
        base = loaded[1].collect()
        for n in counts:
            assert loaded[n].collect().equals(base), f"{n} shards loaded other rows"
    baseline = args.rows / statistics.median(times[1])
    print(f"{'shards':>6} {'median s':>9} {'rows/s':>12} {'vs 1 shard':>11}")
    for n in counts:
        rate = args.rows / statistics.median(times[n])
        print(
            f"{n:>6} {statistics.median(times[n]):>9.2f} {rate:>12,.0f} {rate / baseline:>10.2f}x"
        )


if __name__ == "__main__":
    main()
