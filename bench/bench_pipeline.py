"""The three-stage pipeline (extract → transform → load) on generated orders.

    nice -n 10 python bench/bench_pipeline.py [--rows 1000000] [--rows 10000000]
        [--rows 50000000] [--repeat 3] [--keep DIR]

Variants, each in its own process so its peak memory (ru_maxrss) is its own:
  pandas  the way the seed project did it: read the CSV whole, transform in memory,
          write Parquet, stage by stage (for reference; skipped when pandas is not
          installed, and above --pandas-max-rows)
  polars  bare polars: the same three stages as lazy scans streamed into Parquet,
          no checks of our own and no telemetry (the baseline); its load copies the
          transform's Parquet file to the sink, as the runner's load does for a Parquet
          sink (re-encoding it would make the baseline slower than it needs to be)
  checked bare polars and the example's five quality checks (not_null, unique, range,
          accepted_values, regex), which the runner and the pandas variant run too,
          here in one select over the written transform file (the cheapest way found:
          in the transform's own pass, the fan-out of its stream to a second query
          cost more). The same work as the runner's, without lineage or telemetry:
          what our overhead is measured against besides bare polars
  runner  our runner (`lineage-hub run`) with lineage and telemetry on, emitted to
          the console (captured, not printed), no Kafka: the five quality checks,
          null counts, row counts and samples included

All variants apply the transform of examples/pipelinerun.yaml (rename, casts, two
derived columns, filter, dropNulls, deduplicate, select). Variants run interleaved,
`--repeat` times each, so they share the machine's load; prints the median wall time,
rows/s (source rows over the wall time of all three stages, imports included) and the
largest peak memory, then our rows/s and peak memory beside bare polars' (goals: at
least 95% of its rows/s, at most +10% of its memory).

`--before DIR`: the runner also runs from DIR, another tree of this project (a `git
archive` export of an earlier commit), interleaved with the rest, and this tree's runner
is compared with it: a change measured in one run, where whole-bench ratios of
identical trees move a few points from run to run on a small machine.

The project's modules (this tree's and `--before`'s) are byte-compiled before anything
is measured, as the installed wheel has them (pip compiles at install): with
PYTHONDONTWRITEBYTECODE set, as on some workstations, each runner process would
otherwise compile ~36 of its modules from source (~0.09 s a run, which a stage in its
image never pays). The variants' order is reversed every other repeat, so no variant
always follows the same one (the page cache, the machine's drift), and the runner's
rows/s is also given as the median of the repeats' paired ratios (each repeat's runner
against the bare polars run beside it) with its bootstrap interval (`bench.paired`).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_runner_startup import compile_bytecode
from bench.paired import paired

ROOT = Path(__file__).resolve().parent.parent


def generate(rows: int, path: Path) -> None:
    import polars as pl

    customers = ["acme", "globex", "initech", "umbrella", "wayne", "stark", None]
    statuses = ["completed", "cancelled", "refunded", "pending"]
    idx = pl.int_range(0, rows, eager=True)
    frame = pl.DataFrame(
        {
            # ~1% of ids repeat, so deduplicate has work.
            "order_id": (idx - (idx % 100 == 99).cast(pl.Int64)),
            "customer": pl.Series([customers[i % 7] for i in range(7)]).sample(
                rows, with_replacement=True, seed=1
            ),
            "amount": ((idx * 7919) % 900_000 / 100).round(2),
            "currency": pl.Series(["EUR", "USD", "GBP"]).sample(
                rows, with_replacement=True, seed=2
            ),
            "status": pl.Series(statuses).sample(rows, with_replacement=True, seed=3),
            "created_at": pl.repeat("2025-03-01T14:41:00Z", rows, eager=True),
        }
    )
    partial = path.with_name(f".{path.name}.partial")
    frame.write_csv(partial)
    partial.replace(path)  # an interrupted run leaves no half file for --keep to reuse


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- variants


def run_pandas(src: Path, work: Path) -> int:
    import pandas as pd

    # extract
    df = pd.read_csv(src)
    df.to_parquet(work / "extract.parquet")
    # transform
    df = pd.read_parquet(work / "extract.parquet")
    df = df.rename(columns={"created_at": "ordered_at"})
    df["order_id"] = df["order_id"].astype("int64")
    df["amount"] = df["amount"].astype("float64")
    df["ordered_at"] = pd.to_datetime(df["ordered_at"], utc=True)
    df["gross"] = df["amount"] * 1.2
    df["customer_upper"] = df["customer"].str.upper()
    df = df[df["status"] != "cancelled"]
    df = df.dropna(subset=["customer", "amount"])
    df = df.drop_duplicates(subset=["order_id"], keep="first")
    cols = ["order_id", "customer", "customer_upper", "amount", "gross", "currency"]
    df = df[[*cols, "status", "ordered_at"]]
    failed = {
        "not_null": int(df["order_id"].isna().sum()),
        "unique": int(df["order_id"].duplicated(keep=False).sum()),
        "range": int(((df["amount"] < 0) | (df["amount"] > 10000)).sum()),
        "accepted": int((~df["currency"].isin(["EUR", "USD", "GBP"])).sum()),
        "regex": int((~df["customer"].str.match(r"^[a-z]+$")).sum()),
    }
    assert failed["range"] == 0
    df.to_parquet(work / "transform.parquet")
    # load
    pd.read_parquet(work / "transform.parquet").to_parquet(work / "sink.parquet")
    return len(df)


def run_polars(src: Path, work: Path) -> int:
    import polars as pl

    pl.scan_csv(src).sink_parquet(work / "extract.parquet")
    lf = (
        pl.scan_parquet(work / "extract.parquet")
        .rename({"created_at": "ordered_at"})
        .with_columns(
            pl.col("order_id").cast(pl.Int64),
            pl.col("amount").cast(pl.Float64),
            pl.col("ordered_at").str.to_datetime(time_unit="us", time_zone="UTC"),
        )
        .with_columns(
            (pl.col("amount") * 1.2).alias("gross"),
            pl.col("customer").str.to_uppercase().alias("customer_upper"),
        )
        .filter(pl.col("status") != "cancelled")
        .drop_nulls(["customer", "amount"])
        .unique(subset=["order_id"], keep="first", maintain_order=True)
        .select(
            "order_id",
            "customer",
            "customer_upper",
            "amount",
            "gross",
            "currency",
            "status",
            "ordered_at",
        )
    )
    lf.sink_parquet(work / "transform.parquet")
    shutil.copyfile(work / "transform.parquet", work / "sink.parquet")
    return int(pl.scan_parquet(work / "sink.parquet").select(pl.len()).collect().item())


def run_polars_checked(src: Path, work: Path) -> int:
    import polars as pl

    out = run_polars(src, work)
    failed = (
        pl.scan_parquet(work / "transform.parquet")
        .select(
            pl.col("order_id").null_count().alias("not_null"),
            (pl.len() - pl.col("order_id").n_unique()).alias("unique"),
            ((pl.col("amount") < 0) | (pl.col("amount") > 10000)).sum().alias("range"),
            (~pl.col("currency").is_in(["EUR", "USD", "GBP"])).sum().alias("accepted"),
            (~pl.col("customer").str.contains("^[a-z]+$")).sum().alias("regex"),
        )
        .collect()
        .row(0, named=True)
    )
    assert failed["range"] == 0
    return out


def run_runner(src: Path, work: Path) -> int:
    import yaml

    from pipeline_runner.cli import run_manifest
    from pipeline_runner.emit import ConsoleEmitter

    doc = yaml.safe_load((ROOT / "examples" / "pipelinerun.yaml").read_text())
    doc["spec"]["source"]["uri"] = f"file://{src}"
    doc["spec"]["sink"]["uri"] = f"file://{work / 'sink.parquet'}"
    manifest = work / "run.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    code = run_manifest(
        str(manifest),
        workspace=str(work / "ws"),
        stdout=out,
        stderr=sys.stderr,
        emitter=ConsoleEmitter(io.StringIO()),
    )
    if code != 0:
        raise SystemExit(out.getvalue())
    import polars as pl

    return int(pl.scan_parquet(work / "sink.parquet").select(pl.len()).collect().item())


VARIANTS = {
    "pandas": run_pandas,
    "polars": run_polars,
    "checked": run_polars_checked,
    "runner": run_runner,
}


def child(variant: str, src: Path, rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as tmp:
        started = time.perf_counter()
        out_rows = VARIANTS[variant](src, Path(tmp))
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {"variant": variant, "rows": rows, "out": out_rows, "s": elapsed, "peak_mb": peak_mb()}
        )
    )


def have_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


#: The label of the runner served from the `--before` tree.
BEFORE = "before"


def run_child(
    variant: str, src: Path, rows: int, before: Path | None = None
) -> dict[str, float] | str:
    """One variant in its own process: its figures, or why it failed. `before`: the
    runner of that tree (its own copy of this script runs it, on its own imports)."""
    script = Path(__file__) if before is None else before / "bench" / "bench_pipeline.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--child", variant, str(src), str(rows)],
        capture_output=True,
        text=True,
        check=False,
        cwd=before,
    )
    if proc.returncode != 0:
        return proc.stderr.strip()[-500:]
    figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def paired_rate(runs: dict[str, list[dict[str, float]]], baseline: str = "polars") -> str:
    """The runner's rows/s over the baseline's, repeat by repeat (the ratio of their
    seconds, inverted): the median paired ratio and its interval, as text."""
    bare, ours = runs[baseline], runs["runner"]
    if len(bare) != len(ours):
        return "not paired (a run failed)"
    result = paired([b["s"] for b in bare], [r["s"] for r in ours])
    return (
        f"median {result.median:.1%} [95% CI {result.low:.1%} .. {result.high:.1%}, "
        f"{result.rounds} repeats]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="default 1000000")
    parser.add_argument("--variant", choices=list(VARIANTS), action="append")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant")
    parser.add_argument("--pandas-max-rows", type=int, default=10_000_000)
    parser.add_argument("--keep", help="folder for the generated CSVs (reused when present)")
    parser.add_argument(
        "--before",
        type=Path,
        help="another tree of this project whose runner runs beside this one's",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "CSV", "ROWS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]))
        return 0
    if args.before is not None and not (args.before / "pipeline_runner" / "cli.py").is_file():
        parser.error(f"--before {args.before}: not a tree of this project")
    for tree in (ROOT, args.before):
        if tree is not None:
            compile_bytecode(tree)
    variants = args.variant or list(VARIANTS)
    if "pandas" in variants and not have_pandas():
        print("pandas is not installed: variant (a) skipped")
        variants.remove("pandas")
    data = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-data-"))
    data.mkdir(parents=True, exist_ok=True)
    header = ("rows", "variant", "median s", "rows/s", "peak MB", "rows out", "runs")
    print("{:>11}  {:<8} {:>9} {:>12} {:>9} {:>10} {:>5}".format(*header))
    for rows in args.rows or [1_000_000]:
        src = data / f"orders-{rows}.csv"
        if not src.exists():
            generate(rows, src)
        chosen = [v for v in variants if v != "pandas" or rows <= args.pandas_max_rows]
        if args.before is not None:
            chosen.append(BEFORE)
        runs: dict[str, list[dict[str, float]]] = {v: [] for v in chosen}
        for repeat in range(args.repeat):
            for variant in chosen if repeat % 2 == 0 else chosen[::-1]:
                if variant == BEFORE:
                    got = run_child("runner", src, rows, args.before)
                else:
                    got = run_child(variant, src, rows)
                if isinstance(got, str):
                    print(f"{rows:>11,}  {variant:<8} failed: {got}")
                    continue
                runs[variant].append(got)
        medians: dict[str, tuple[float, float]] = {}
        for variant, done in runs.items():
            if not done:
                continue
            seconds = statistics.median(r["s"] for r in done)
            peak = max(r["peak_mb"] for r in done)
            medians[variant] = (rows / seconds, peak)
            print(
                f"{rows:>11,}  {variant:<8} {seconds:>9.2f} {rows / seconds:>12,.0f} "
                f"{peak:>9.0f} {int(done[0]['out']):>10,} {len(done):>5}"
            )
        if "runner" in medians and "polars" in medians:
            (ours, our_peak), (bare, bare_peak) = medians["runner"], medians["polars"]
            print(
                f"{rows:>11,}  runner ÷ polars: rows/s {ours / bare:.1%} (goal >= 95%), "
                f"peak memory {our_peak / bare_peak - 1:+.1%} (goal <= +10%)"
            )
        if "runner" in medians and "polars" in medians:
            print(f"{rows:>11,}  runner ÷ polars, paired: rows/s {paired_rate(runs):s}")
        if "runner" in medians and "checked" in medians:
            (ours, our_peak), (same, same_peak) = medians["runner"], medians["checked"]
            print(
                f"{rows:>11,}  runner ÷ checked (the same checks): rows/s {ours / same:.1%}, "
                f"peak memory {our_peak / same_peak - 1:+.1%}; paired "
                f"{paired_rate(runs, 'checked'):s}"
            )
        if "runner" in medians and BEFORE in medians:
            (ours, our_peak), (old, old_peak) = medians["runner"], medians[BEFORE]
            print(
                f"{rows:>11,}  runner ÷ before: rows/s {ours / old:.1%}, "
                f"peak memory {our_peak / old_peak - 1:+.1%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
