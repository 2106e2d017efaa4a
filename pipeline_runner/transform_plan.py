"""Compile a PipelineRun's declarative transform into a polars LazyFrame pipeline.

The order is fixed (and documented on `TransformSpec`): rename, cast, derived,
filter, dropNulls, deduplicate, select. SQL expressions go through
`pl.sql_expr`, so a syntax error is found when the plan is built, and
`check_plan` finds unknown columns and bad casts against a schema before any
data is read. Quality checks are evaluated here too, in one pass over the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
from polars.exceptions import PolarsError

from lineagehub.api.enums import CastType, CheckType, Severity

if TYPE_CHECKING:
    from lineagehub.api import QualityCheck, TransformSpec


class TransformPlanError(ValueError):
    """The transform cannot be applied; the message names the step and field."""


_NUMERIC: dict[CastType, pl.DataType] = {
    CastType.INT32: pl.Int32(),
    CastType.INT64: pl.Int64(),
    CastType.FLOAT32: pl.Float32(),
    CastType.FLOAT64: pl.Float64(),
}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def polars_type(cast: CastType) -> pl.DataType:
    """The polars type a cast produces (datetimes are microseconds, UTC)."""
    if cast in _NUMERIC:
        return _NUMERIC[cast]
    return {
        CastType.STRING: pl.String(),
        CastType.BOOLEAN: pl.Boolean(),
        CastType.DATE: pl.Date(),
        CastType.DATETIME: pl.Datetime("us", "UTC"),
    }[cast]


def cast_expr(column: str, target: CastType, source: pl.DataType | None) -> pl.Expr:
    """A strict cast of `column` to `target`; text is parsed (ISO dates, true/false)."""
    col = pl.col(column)
    is_text = source is not None and source == pl.String
    if target is CastType.DATETIME:
        if is_text:
            return col.str.to_datetime(time_unit="us", time_zone="UTC", strict=True)
        if source is not None and isinstance(source, pl.Datetime) and source.time_zone:
            return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        if source is not None and isinstance(source, pl.Datetime):
            return col.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return col.cast(pl.Datetime("us", "UTC"), strict=True)
    if target is CastType.DATE and is_text:
        return col.str.to_date(strict=True)
    if target is CastType.BOOLEAN and is_text:
        lowered = col.str.strip_chars().str.to_lowercase()
        mapping = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}
        return lowered.replace_strict(mapping, return_dtype=pl.Boolean)
    if target in _NUMERIC and is_text:
        return col.str.strip_chars().cast(_NUMERIC[target], strict=True)
    return col.cast(polars_type(target), strict=True)


def sql(expr: str, where: str) -> pl.Expr:
    """Parse a SQL expression, naming the spec field when it does not parse."""
    try:
        return pl.sql_expr(expr)
    except PolarsError as exc:
        raise TransformPlanError(f"{where}: cannot parse SQL expression {expr!r}: {exc}") from exc


def _known(columns: Sequence[str], needed: Sequence[str], where: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise TransformPlanError(
            f"{where}: unknown column(s) {missing}; available: {list(columns)}"
        )


def compile_transform(
    lf: pl.LazyFrame,
    spec: TransformSpec,
    schema: Mapping[str, pl.DataType] | None = None,
) -> pl.LazyFrame:
    """The lazy pipeline for `spec` on top of `lf`.

    `schema` is `lf`'s schema; it is read from `lf` when not given (cheap for scans).
    Column names are checked step by step, so an error names the step that failed.
    """
    current: dict[str, pl.DataType] = dict(schema if schema is not None else lf.collect_schema())

    if spec.rename:
        _known(list(current), list(spec.rename), "transform.rename")
        lf = lf.rename(dict(spec.rename))
        current = {spec.rename.get(k, k): v for k, v in current.items()}

    if spec.cast:
        _known(list(current), list(spec.cast), "transform.cast")
        lf = lf.with_columns(
            cast_expr(col, target, current[col]).alias(col) for col, target in spec.cast.items()
        )
        current.update({col: polars_type(t) for col, t in spec.cast.items()})

    for i, derived in enumerate(spec.derived or []):
        where = f"transform.derived[{i}].expr"
        expr = sql(derived.expr, where)
        _known(list(current), expr.meta.root_names(), where)
        lf = lf.with_columns(expr.alias(derived.name))
        current[derived.name] = pl.Unknown()

    if spec.filter:
        expr = sql(spec.filter, "transform.filter")
        _known(list(current), expr.meta.root_names(), "transform.filter")
        lf = lf.filter(expr)

    if spec.drop_nulls:
        _known(list(current), spec.drop_nulls, "transform.dropNulls")
        lf = lf.drop_nulls(subset=list(spec.drop_nulls))

    if spec.deduplicate is not None:
        subset = spec.deduplicate.columns
        if subset:
            _known(list(current), subset, "transform.deduplicate.columns")
        lf = lf.unique(
            subset=list(subset) if subset else None,
            keep=spec.deduplicate.keep.value,
            maintain_order=True,
        )

    if spec.select:
        _known(list(current), spec.select, "transform.select")
        lf = lf.select(list(spec.select))
    return lf


def check_plan(spec: TransformSpec, schema: Mapping[str, pl.DataType]) -> pl.Schema:
    """The output schema of `spec` on input `schema`, without data (raises on any error)."""
    empty = pl.LazyFrame(schema=dict(schema))
    lf = compile_transform(empty, spec, schema)
    try:
        return lf.collect_schema()
    except PolarsError as exc:
        raise TransformPlanError(f"transform: {exc}") from exc


# --------------------------------------------------------------------------- quality


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one quality check."""

    name: str
    type: CheckType
    column: str
    severity: Severity
    passed: bool
    failed_rows: int
    message: str

    @property
    def blocking(self) -> bool:
        """A failed check of severity `fail` fails the run."""
        return not self.passed and self.severity is Severity.FAIL


def _failures(check: QualityCheck) -> pl.Expr:
    """An expression counting the rows that violate `check` (nulls only count for not_null)."""
    col = pl.col(check.column)
    present = col.is_not_null()
    if check.type is CheckType.NOT_NULL:
        bad = col.is_null()
    elif check.type is CheckType.UNIQUE:
        bad = present & col.is_duplicated()
    elif check.type is CheckType.RANGE:
        bad = pl.lit(False)
        if check.min is not None:
            bad = bad | (col < check.min)
        if check.max is not None:
            bad = bad | (col > check.max)
        bad = present & bad
    elif check.type is CheckType.ACCEPTED_VALUES:
        bad = present & ~col.cast(pl.String).is_in(list(check.values or []))
    else:  # regex
        bad = present & ~col.cast(pl.String).str.contains(check.pattern or "")
    return bad.sum()


def _repeats(check: QualityCheck) -> pl.Expr:
    """For a unique check: how many non-null values repeat an earlier one. Counting
    distinct values is a cheap aggregation; marking every duplicated row is not, so the
    exact count of failing rows is computed only when this is not 0."""
    present = pl.col(check.column).drop_nulls()
    return present.len() - present.n_unique()


def _first_pass(check: QualityCheck) -> pl.Expr:
    return _repeats(check) if check.type is CheckType.UNIQUE else _failures(check)


def _describe(check: QualityCheck, failed: int) -> str:
    if failed == 0:
        return "ok"
    what = {
        CheckType.NOT_NULL: "null",
        CheckType.UNIQUE: "duplicated",
        CheckType.RANGE: f"outside [{check.min}, {check.max}]",
        CheckType.ACCEPTED_VALUES: "not an accepted value",
        CheckType.REGEX: f"not matching {check.pattern!r}",
    }[check.type]
    return f"{failed} row(s) with {check.column} {what}"


def unique_by_construction(spec: TransformSpec, check: QualityCheck) -> bool:
    """A unique check on the one column the transform deduplicates on: it cannot fail.
    `deduplicate` comes after every step that changes a column's values (only `select`
    follows, by name), and keeps at most one row per value whatever its `keep` (nulls
    count as one value there, and are not duplicates to the check)."""
    return (
        check.type is CheckType.UNIQUE
        and spec.deduplicate is not None
        and list(spec.deduplicate.columns or []) == [check.column]
    )


@dataclass(frozen=True)
class InPassChecks:
    """The checks the transform's own streaming pass counts: every one but a unique
    check (counting distinct values in that engine is twice as slow as after the write
    in memory), one `select` to collect with the work (`pl.collect_all`); a unique check
    the transform's `deduplicate` already guarantees is counted as 0 with no pass."""

    query: pl.LazyFrame | None
    indexes: tuple[int, ...]
    known: dict[int, int]

    @classmethod
    def of(cls, plan: pl.LazyFrame, spec: TransformSpec, columns: Sequence[str]) -> InPassChecks:
        checks = spec.quality or []
        known = {
            i: 0
            for i, c in enumerate(checks)
            if c.column in columns and unique_by_construction(spec, c)
        }
        streamed = [
            (i, c)
            for i, c in enumerate(checks)
            if c.column in columns and c.type is not CheckType.UNIQUE
        ]
        query = plan.select(_failures(c).alias(f"c{i}") for i, c in streamed) if streamed else None
        return cls(query, tuple(i for i, _ in streamed), known)

    def counts(self, row: pl.DataFrame | None) -> dict[int, int]:
        """The failing rows of each check counted, from the collected `query`."""
        found = dict(self.known)
        if row is not None:
            found.update({i: int(v or 0) for i, v in zip(self.indexes, row.row(0), strict=True)})
        return found


def run_quality_checks(
    data: pl.DataFrame | pl.LazyFrame,
    checks: Sequence[QualityCheck],
    known: Mapping[int, int] | None = None,
) -> list[CheckResult]:
    """Evaluate every check in one pass over `data` (a second one only for unique checks
    that found repeated values, to count the rows involved). A check on a missing column
    fails (it is never skipped silently). `known`: failing rows already counted, by the
    check's index (`InPassChecks`); those checks are not evaluated again."""
    lf = data.lazy()
    columns = set(lf.collect_schema().names())
    counts: dict[int, int] = dict(known or {})
    runnable = [(i, c) for i, c in enumerate(checks) if c.column in columns and i not in counts]
    try:
        if runnable:
            query = lf.select(_first_pass(c).alias(f"c{i}") for i, c in runnable)
            # Only the checked columns are read. The in-memory engine counts distinct
            # values of a large column twice as fast as the streaming one, in the same
            # peak memory (32M rows: 7 s against 14 s, 1.8 GB both).
            row = query.collect(engine="in-memory").row(0)
            counts.update({i: int(v or 0) for (i, _), v in zip(runnable, row, strict=True)})
        repeated = [(i, c) for i, c in runnable if c.type is CheckType.UNIQUE and counts[i]]
        if repeated:
            exact = lf.select(_failures(c).alias(f"c{i}") for i, c in repeated).collect()
            counts.update(
                {i: int(v or 0) for (i, _), v in zip(repeated, exact.row(0), strict=True)}
            )
    except PolarsError as exc:
        raise TransformPlanError(f"transform.quality: {exc}") from exc
    results: list[CheckResult] = []
    for i, check in enumerate(checks):
        if i in counts:
            failed = counts[i]
            message = _describe(check, failed)
        else:
            failed = 0
            message = f"column {check.column!r} not found"
        results.append(
            CheckResult(
                name=check.display_name,
                type=check.type,
                column=check.column,
                severity=check.severity,
                passed=i in counts and failed == 0,
                failed_rows=failed,
                message=message,
            )
        )
    return results
