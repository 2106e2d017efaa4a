"""Quality results with samples of the failing rows, and per-column data metrics.

`transform_plan.run_quality_checks` counts the failures (all but a unique check in the
transform's own pass, `transform_plan.InPassChecks`); here the rows behind a failed
check are sampled (a few offending values, for people and the termination message),
and the null counts the `dataQualityMetrics` facet carries are computed in the same pass
as the transform itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl
from polars.exceptions import PolarsError

from lineagehub.api.enums import CheckType
from lineagehub.shard_quality import SAMPLE_SIZE
from pipeline_runner.result import QualityOutcome
from pipeline_runner.transform_plan import CheckResult

if TYPE_CHECKING:
    from lineagehub.api import QualityCheck


def violation_mask(check: QualityCheck) -> pl.Expr:
    """True for the rows that violate `check` (nulls violate only not_null). Must agree
    with `transform_plan.run_quality_checks`; a unit test holds them together."""
    col = pl.col(check.column)
    present = col.is_not_null()
    if check.type is CheckType.NOT_NULL:
        return col.is_null()
    if check.type is CheckType.UNIQUE:
        return present & col.is_duplicated()
    if check.type is CheckType.RANGE:
        bad = pl.lit(False)
        if check.min is not None:
            bad = bad | (col < check.min)
        if check.max is not None:
            bad = bad | (col > check.max)
        return present & bad
    if check.type is CheckType.ACCEPTED_VALUES:
        return present & ~col.cast(pl.String).is_in(list(check.values or []))
    return present & ~col.cast(pl.String).str.contains(check.pattern or "")


def sample_failures(data: pl.LazyFrame, check: QualityCheck, size: int = SAMPLE_SIZE) -> list[str]:
    """Up to `size` distinct offending values of a failed check, as text."""
    try:
        values = (
            data.filter(violation_mask(check))
            .select(pl.col(check.column).cast(pl.String).fill_null("null"))
            .unique(maintain_order=True)
            .head(size)
            .collect()
            .to_series()
            .to_list()
        )
    except PolarsError:
        return []
    return [str(v) for v in values]


def outcomes(
    data: pl.LazyFrame, checks: Sequence[QualityCheck], results: Sequence[CheckResult]
) -> list[QualityOutcome]:

    out: list[QualityOutcome] = []
    columns = set(data.collect_schema().names())
    for check, result in zip(checks, results, strict=True):
        sample: list[str] = []
        if not result.passed and check.column in columns:
            sample = sample_failures(data, check)
        out.append(
            QualityOutcome(
                name=result.name,
                type=result.type.value,
                column=result.column,
                severity=result.severity.value,
                success=result.passed,
                failed_rows=result.failed_rows,
                message=result.message,
                sample=sample,
            )
        )
    return out


def column_metrics_query(data: pl.LazyFrame) -> pl.LazyFrame:
    """One row: the row count (`__rows__`) and the null count of every column. Collect
    it with the query that does the work (`pl.collect_all`), so the data is read once."""
    names = data.collect_schema().names()
    return data.select(pl.len().alias("__rows__"), *(pl.col(n).null_count() for n in names))


def column_metrics(row: pl.DataFrame) -> tuple[int, dict[str, int]]:
    """(row count, null count per column) from what `column_metrics_query` collected."""
    values = row.row(0, named=True)
    rows = int(values.pop("__rows__"))
    return rows, {name: int(nulls) for name, nulls in values.items()}
