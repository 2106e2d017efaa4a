"""The work of each stage: extract, transform, load.

Every stage streams (polars lazy scans into `sink_*`), writes its output to a
temporary file next to the target and moves it into place only when the stage
succeeded, so a failed stage leaves nothing half-written: neither in the workspace
nor at the sink. Each fills in the `StageResult` it is given as it goes (a failure
still reports what was known) and raises `StageError` with a one-line reason.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from polars.exceptions import PolarsError

from lineagehub.api.enums import StageName
from lineagehub.datasets import redact_uri
from pipeline_runner.column_lineage import column_lineage, identity_lineage
from pipeline_runner.errors import ErrorKind, StageError, first_line
from pipeline_runner.lineage import dataset_name, planned_datasets, schema_fields, workspace_uri
from pipeline_runner.quality import column_metrics, column_metrics_query, outcomes
from pipeline_runner.result import StageResult
from pipeline_runner.settings import Settings
from pipeline_runner.shard_io import current_shard, input_paths, output_path
from pipeline_runner.shard_source import Shard, is_glob, open_shard
from pipeline_runner.sinks import count_rows, sink_for
from pipeline_runner.sources import invalid_source, open_source
from pipeline_runner.telemetry import ATTR_BYTES, ATTR_ROWS, StageTelemetry
from pipeline_runner.transform_plan import (
    InPassChecks,
    TransformPlanError,
    check_plan,
    compile_transform,
    run_quality_checks,
)

if TYPE_CHECKING:
    from lineagehub.api import StageConfig

StageFn = Callable[["StageConfig", Settings, StageTelemetry, StageResult], None]


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _workspace(cfg: StageConfig, folder: Path | None = None) -> Path:
    """The run's workspace (or `folder` in it), created if missing."""
    path = folder or Path(cfg.workspace)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StageError(
            ErrorKind.INTERNAL_ERROR,
            f"workspace {path} cannot be created: {first_line(exc)}",
            "mount a writable volume at the workspace",
        ) from exc
    return path


def _intermediate(
    cfg: StageConfig, shard: Shard, stage: StageName, needs: str
) -> tuple[list[Path], pl.LazyFrame]:
    """Open this shard's parts of what `stage` left in the workspace (one Parquet file,
    or its shards' parts). A shard that takes no part gets no rows, with the schema."""
    paths, first = input_paths(cfg, shard)
    for path in [*paths, first]:
        if not path.is_file():
            raise StageError(
                ErrorKind.INPUT_NOT_FOUND,
                f"{needs} input {path} not found in the workspace",
                f"run the {stage.value} stage first, with the same workspace and parallelism",
            )
    try:
        frame = pl.scan_parquet(paths) if paths else pl.scan_parquet(first).clear()
        frame.collect_schema()
    except (PolarsError, OSError) as exc:
        raise StageError(
            ErrorKind.INPUT_INVALID,
            f"{needs} input {paths[0] if paths else first} is not readable Parquet:"
            f" {first_line(exc)}",
            f"re-run the {stage.value} stage",
        ) from exc
    return paths, frame


def _rows_and_bytes(paths: list[Path]) -> tuple[int, int]:
    """Rows (from the Parquet footers) and bytes of the parts."""
    return sum(count_rows(str(p)) for p in paths), sum(p.stat().st_size for p in paths)


def _target(cfg: StageConfig, shard: Shard) -> Path:
    target = output_path(cfg, shard)
    if shard.count > 1:
        _workspace(cfg, target.parent)
    return target


# --------------------------------------------------------------------------- extract


def extract(cfg: StageConfig, settings: Settings, tel: StageTelemetry, result: StageResult) -> None:
    """Source → `<workspace>/extract.parquet`."""
    inputs, outputs = planned_datasets(cfg)
    result.inputs, result.outputs = inputs, outputs
    source, output = inputs[0], outputs[0]
    workspace = _workspace(cfg)
    shard = current_shard(cfg)
    target = _target(cfg, shard)
    result.output_uri = workspace_uri(str(target))
    tmp = _temp_beside(target)
    try:
        with tel.step("read", {"lineagehub.source": redact_uri(cfg.source.uri)}) as span:
            if shard.count > 1 or is_glob(cfg.source.uri):
                opened = open_shard(cfg.source, shard, str(workspace), settings)
            else:
                opened = open_source(
                    cfg.source,
                    str(workspace),
                    settings,
                    download_name=f".source-{cfg.run_id}",
                )
            try:
                result.bytes_read = opened.bytes_read
                source.schema = schema_fields(opened.schema)
                source.size = opened.bytes_read
                try:
                    opened.frame.sink_parquet(tmp)
                except (PolarsError, OSError, ValueError) as exc:
                    raise invalid_source(cfg.source.uri, cfg.source.format, exc) from exc
            finally:
                opened.cleanup()
            rows = count_rows(str(tmp))
            span.set_attribute(ATTR_ROWS, rows)
            if opened.bytes_read is not None:
                span.set_attribute(ATTR_BYTES, opened.bytes_read)
        result.records_in = rows
        source.row_count = rows
        with tel.step("write", {"lineagehub.target": str(target)}) as span:
            if rows == 0 and shard.count == 1:  # shards: the one that commits checks the sum
                raise StageError(
                    ErrorKind.INPUT_INVALID,
                    f"source {redact_uri(cfg.source.uri)} has no data rows",
                    "check that the source was written completely (an empty run loads nothing)",
                )
            tmp.replace(target)  # atomic (os.replace)
            size = target.stat().st_size
            span.set_attribute(ATTR_ROWS, rows)
            span.set_attribute(ATTR_BYTES, size)
    finally:
        _unlink(tmp)
    schema = pl.scan_parquet(target).collect_schema()
    result.records_out = rows
    result.bytes_written = size
    result.output_schema = schema_fields(schema)
    output.schema, output.row_count, output.size = result.output_schema, rows, size
    output.column_lineage = identity_lineage(schema.names(), source.namespace, source.name)


# --------------------------------------------------------------------------- transform


def transform(
    cfg: StageConfig, settings: Settings, tel: StageTelemetry, result: StageResult
) -> None:
    """`extract.parquet` → the declarative transform → quality checks → `transform.parquet`."""
    inputs, outputs = planned_datasets(cfg)
    result.inputs, result.outputs = inputs, outputs
    source, output = inputs[0], outputs[0]
    shard = current_shard(cfg)
    target = _target(cfg, shard)
    result.output_uri = workspace_uri(str(target))
    origin = redact_uri(cfg.source.uri)  # as messages show it
    with tel.step("read") as span:
        paths, frame = _intermediate(cfg, shard, StageName.EXTRACT, "transform")
        schema = frame.collect_schema()
        rows_in, size_in = _rows_and_bytes(paths)
        source.schema, source.row_count, source.size = schema_fields(schema), rows_in, size_in
        result.records_in, result.bytes_read = rows_in, size_in
        span.set_attribute(ATTR_ROWS, rows_in)
        span.set_attribute(ATTR_BYTES, size_in)

    spec = cfg.transform
    tmp = _temp_beside(target)
    try:
        with tel.step("transform") as span:
            try:
                out_columns = check_plan(spec, schema).names()
                plan = compile_transform(frame, spec, schema)
            except TransformPlanError as exc:
                raise StageError(
                    ErrorKind.TRANSFORM_ERROR,
                    f"transform of {origin} is invalid: {exc}",
                    "correct spec.transform to use the source's columns",
                ) from exc
            # One pass: the input's null counts and the output's quality checks (but a
            # unique one) are taken as the plan streams it (quality.py, InPassChecks).
            in_pass = InPassChecks.of(plan, spec, out_columns)
            metrics, checked_row = _transform_pass(plan, frame, tmp, in_pass, origin)
            _, source.null_counts = column_metrics(metrics)
            rows_out = count_rows(str(tmp))
            result.records_out = rows_out
            span.set_attribute(ATTR_ROWS, rows_out)
            span.set_attribute("lineagehub.rows.rejected", max(rows_in - rows_out, 0))

        checks = spec.quality or []
        with tel.step("validate", {"lineagehub.checks": len(checks)}) as span:
            checked = pl.scan_parquet(tmp)
            try:
                results = run_quality_checks(checked, checks, in_pass.counts(checked_row))
            except TransformPlanError as exc:
                raise StageError(
                    ErrorKind.TRANSFORM_ERROR,
                    f"quality checks on {origin} could not run: {exc}",
                    "correct spec.transform.quality",
                ) from exc
            result.quality = outcomes(checked, checks, results)
            failed = [q for q in result.quality if not q.success]
            span.set_attribute(ATTR_ROWS, rows_out)
            span.set_attribute("lineagehub.checks.failed", len(failed))
            blocking = [r for r in results if r.blocking]
            if blocking:
                detail = "; ".join(f"{r.name}: {r.message}" for r in blocking)
                raise StageError(
                    ErrorKind.QUALITY_CHECK_FAILED,
                    f"{len(blocking)} quality check(s) of severity fail failed on data from "
                    f"{origin}: {detail}",
                    "correct the source data, or relax the check or set its severity to warn",
                )

        with tel.step("write", {"lineagehub.target": str(target)}) as span:
            tmp.replace(target)  # atomic (os.replace)
            size = target.stat().st_size
            span.set_attribute(ATTR_ROWS, rows_out)
            span.set_attribute(ATTR_BYTES, size)
    finally:
        _unlink(tmp)
    out_schema = pl.scan_parquet(target).collect_schema()
    result.bytes_written = size
    result.output_schema = schema_fields(out_schema)
    output.schema, output.row_count, output.size = result.output_schema, rows_out, size
    output.column_lineage = column_lineage(spec, schema.names()).to_openlineage(
        source.namespace, source.name
    )


def _transform_pass(
    plan: pl.LazyFrame, frame: pl.LazyFrame, tmp: Path, in_pass: InPassChecks, origin: str
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The transform streamed into `tmp`, with the input's column metrics and the
    in-pass quality counts collected in the same pass. A failure is the transform's,
    unless the same pass without the checks succeeds: then a check could not run (an
    expression on the wrong type), and the stage says so as it always did."""
    work = [plan.sink_parquet(tmp, lazy=True), column_metrics_query(frame)]
    checks = [] if in_pass.query is None else [in_pass.query]
    try:
        _, metrics, *counted = pl.collect_all([*work, *checks], engine="streaming")
    except (PolarsError, OSError) as exc:
        transform_error = _failure_of(work) if checks and isinstance(exc, PolarsError) else exc
        if transform_error is None:
            raise StageError(
                ErrorKind.TRANSFORM_ERROR,
                f"quality checks on {origin} could not run: transform.quality: {first_line(exc)}",
                "correct spec.transform.quality",
            ) from exc
        raise StageError(
            ErrorKind.TRANSFORM_ERROR,
            f"transform of {origin} failed: {first_line(transform_error)}",
            "correct the data, or spec.transform (a cast the values do not fit, "
            "an expression on the wrong type)",
        ) from transform_error
    return metrics, (counted[0] if counted else None)


def _failure_of(work: list[pl.LazyFrame]) -> BaseException | None:
    """What the pass fails with without the quality checks; None when it succeeds."""
    try:
        pl.collect_all(work, engine="streaming")
    except (PolarsError, OSError) as exc:
        return exc
    return None


# --------------------------------------------------------------------------- load


def load(cfg: StageConfig, settings: Settings, tel: StageTelemetry, result: StageResult) -> None:
    """`transform.parquet` → the sink, all or nothing."""
    inputs, outputs = planned_datasets(cfg)
    result.inputs, result.outputs = inputs, outputs
    source, output = inputs[0], outputs[0]
    result.output_uri = redact_uri(cfg.sink.uri)
    with tel.step("read") as span:
        paths, frame = _intermediate(cfg, current_shard(cfg), StageName.TRANSFORM, "load")
        schema = frame.collect_schema()
        rows_in, size_in = _rows_and_bytes(paths)
        source.schema, source.row_count, source.size = schema_fields(schema), rows_in, size_in
        result.records_in, result.bytes_read = rows_in, size_in
        span.set_attribute(ATTR_ROWS, rows_in)
        span.set_attribute(ATTR_BYTES, size_in)
    with tel.step(
        "write",
        {"lineagehub.sink": redact_uri(cfg.sink.uri), "lineagehub.mode": cfg.sink.mode.value},
    ) as span:
        sink = sink_for(cfg.sink, settings)
        with _one_file(paths, frame) as path:
            stats = sink.write(str(path), cfg.sink.mode)
        span.set_attribute(ATTR_ROWS, stats.rows)
        if stats.bytes is not None:
            span.set_attribute(ATTR_BYTES, stats.bytes)
    result.records_out = stats.rows
    result.bytes_written = stats.bytes
    result.output_schema = schema_fields(schema)
    output.schema, output.row_count, output.size = result.output_schema, stats.rows, stats.bytes
    namespace, name = dataset_name(cfg.sink.uri)
    output.namespace, output.name = namespace, name
    output.column_lineage = identity_lineage(schema.names(), source.namespace, source.name)


@contextlib.contextmanager
def _one_file(paths: list[Path], frame: pl.LazyFrame) -> Iterator[Path]:
    """The input as one Parquet file: the single part, or the parts joined in order into
    a temporary file beside them (removed afterwards), which the sink then commits as
    it commits one pod's output, all or nothing."""
    if len(paths) == 1:
        yield paths[0]
        return
    joined = _temp_beside(paths[0].parent.with_suffix(".parquet"))
    try:
        try:
            frame.sink_parquet(joined)
        except (PolarsError, OSError) as exc:
            raise StageError(
                ErrorKind.INPUT_INVALID,
                f"load input parts in {paths[0].parent} cannot be joined: {first_line(exc)}",
                "re-run the transform stage",
            ) from exc
        yield joined
    finally:
        _unlink(joined)


STAGE_FUNCTIONS: dict[StageName, StageFn] = {
    StageName.EXTRACT: extract,
    StageName.TRANSFORM: transform,
    StageName.LOAD: load,
}
