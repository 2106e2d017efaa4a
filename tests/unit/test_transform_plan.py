"""The transform compiler and the quality checks, table-driven over small frames."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from lineagehub.api import CheckType, QualityCheck, TransformSpec
from pipeline_runner.transform_plan import (
    TransformPlanError,
    check_plan,
    compile_transform,
    run_quality_checks,
)

ROOT = Path(__file__).resolve().parents[2]


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["1", "2", "2", "3", "4"],
            "name": ["a", "b", "b", None, "d"],
            "amount": ["10.5", "20", "20", "30", "-1"],
            "paid": ["true", "no", "no", "YES", "0"],
            "day": ["2025-03-01", "2025-03-02", "2025-03-02", "2025-03-03", "2025-03-04"],
            "at": ["2025-03-01T10:00:00Z"] * 5,
        }
    )


def run(transform: dict[str, Any]) -> pl.DataFrame:
    spec = TransformSpec.model_validate(transform)
    return compile_transform(frame().lazy(), spec).collect()


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # (id, transform, expectations: columns / rows / values {col: list})
    ("empty-is-copy", {}, {"rows": 5, "columns": ["id", "name", "amount", "paid", "day", "at"]}),
    ("select-orders", {"select": ["name", "id"]}, {"columns": ["name", "id"]}),
    (
        "rename",
        {"rename": {"id": "order_id"}, "select": ["order_id"]},
        {"columns": ["order_id"], "values": {"order_id": ["1", "2", "2", "3", "4"]}},
    ),
    (
        "cast-int-float",
        {"cast": {"id": "int64", "amount": "float64"}, "select": ["id", "amount"]},
        {"values": {"id": [1, 2, 2, 3, 4], "amount": [10.5, 20.0, 20.0, 30.0, -1.0]}},
    ),
    (
        "cast-bool",
        {"cast": {"paid": "boolean"}, "select": ["paid"]},
        {"values": {"paid": [True, False, False, True, False]}},
    ),
    (
        "cast-date",
        {"cast": {"day": "date"}, "select": ["day"], "deduplicate": {}},
        {
            "values": {
                "day": [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3), date(2025, 3, 4)]
            }
        },
    ),
    (
        "cast-datetime",
        {"cast": {"at": "datetime"}, "select": ["at"], "deduplicate": {}},
        {"values": {"at": [datetime(2025, 3, 1, 10, tzinfo=UTC)] * 4}},
    ),  # dedupe runs before select
    (
        "derived-after-cast",
        {
            "cast": {"amount": "float64"},
            "derived": [{"name": "gross", "expr": "amount * 2"}],
            "select": ["gross"],
        },
        {"values": {"gross": [21.0, 40.0, 40.0, 60.0, -2.0]}},
    ),
    (
        "derived-chain",
        {
            "cast": {"amount": "float64"},
            "derived": [{"name": "g", "expr": "amount + 1"}, {"name": "h", "expr": "g * 10"}],
            "select": ["h"],
        },
        {"values": {"h": [115.0, 210.0, 210.0, 310.0, 0.0]}},
    ),
    (
        "derived-function",
        {"derived": [{"name": "u", "expr": "upper(name)"}], "select": ["u"]},
        {"values": {"u": ["A", "B", "B", None, "D"]}},
    ),
    (
        "filter-sql",
        {"cast": {"amount": "float64"}, "filter": "amount > 15 AND name <> 'zz'"},
        {"rows": 2},
    ),  # the null name row is dropped: SQL's NULL is not true
    ("drop-nulls", {"dropNulls": ["name"]}, {"rows": 4}),
    ("dedupe-all", {"deduplicate": {}}, {"rows": 4}),
    (
        "dedupe-subset-last",
        {"deduplicate": {"columns": ["id"], "keep": "last"}, "select": ["id"]},
        {"values": {"id": ["1", "2", "3", "4"]}},
    ),
    (
        "order-rename-then-filter",
        {
            "rename": {"amount": "amt"},
            "cast": {"amt": "float64"},
            "filter": "amt >= 20",
            "select": ["amt"],
        },
        {"values": {"amt": [20.0, 20.0, 30.0]}},
    ),
]


@pytest.mark.parametrize(("transform", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_transform(transform: dict[str, Any], expect: dict[str, Any]) -> None:
    out = run(transform)
    if "rows" in expect:
        assert out.height == expect["rows"]
    if "columns" in expect:
        assert out.columns == expect["columns"]
    for column, values in expect.get("values", {}).items():
        assert out[column].to_list() == values


ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("rename-unknown", {"rename": {"nope": "x"}}, "transform.rename"),
    ("cast-unknown", {"cast": {"nope": "int64"}}, "transform.cast"),
    (
        "derived-unknown-column",
        {"derived": [{"name": "x", "expr": "nope + 1"}]},
        "transform.derived[0].expr",
    ),
    (
        "derived-bad-sql",
        {"derived": [{"name": "x", "expr": "amount +* 1"}]},
        "transform.derived[0].expr",
    ),
    ("filter-bad-sql", {"filter": "amount >>> 1"}, "transform.filter"),
    ("filter-unknown", {"filter": "nope > 1"}, "transform.filter"),
    ("select-unknown", {"select": ["nope"]}, "transform.select"),
    ("select-renamed-away", {"rename": {"id": "key"}, "select": ["id"]}, "transform.select"),
    ("drop-nulls-unknown", {"dropNulls": ["nope"]}, "transform.dropNulls"),
    ("dedupe-unknown", {"deduplicate": {"columns": ["nope"]}}, "transform.deduplicate.columns"),
]


@pytest.mark.parametrize(
    ("transform", "where"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_plan_errors_name_the_step(transform: dict[str, Any], where: str) -> None:
    spec = TransformSpec.model_validate(transform)
    with pytest.raises(TransformPlanError, match=where.replace("[", r"\[").replace("]", r"\]")):
        compile_transform(frame().lazy(), spec)


def test_bad_cast_fails_at_collect() -> None:
    spec = TransformSpec.model_validate({"cast": {"name": "int64"}})
    with pytest.raises(pl.exceptions.PolarsError):
        compile_transform(frame().lazy(), spec).collect()


def test_check_plan_gives_output_schema_without_data() -> None:
    spec = TransformSpec.model_validate(
        {
            "cast": {"amount": "float64", "at": "datetime"},
            "derived": [{"name": "gross", "expr": "amount * 1.2"}],
            "select": ["id", "gross", "at"],
        }
    )
    schema = check_plan(spec, frame().schema)
    expected: dict[str, pl.DataType] = {
        "id": pl.String(),
        "gross": pl.Float64(),
        "at": pl.Datetime("us", "UTC"),
    }
    assert schema == pl.Schema(expected)


def test_example_pipeline_runs_on_example_data() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "pipelinerun.yaml").read_text())
    spec = TransformSpec.model_validate(doc["spec"]["transform"])
    out = compile_transform(pl.scan_csv(ROOT / "examples" / "data" / "orders.csv"), spec).collect()
    assert out.columns == spec.select
    assert out["order_id"].is_unique().all()
    assert out["status"].ne("cancelled").all()
    assert out["amount"].null_count() == 0
    results = run_quality_checks(out, spec.quality or [])
    assert all(r.passed for r in results), results


def test_quality_fail_example_fails() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "pipelinerun-quality-fail.yaml").read_text())
    spec = TransformSpec.model_validate(doc["spec"]["transform"])
    out = compile_transform(pl.scan_csv(ROOT / "examples" / "data" / "orders.csv"), spec)
    results = run_quality_checks(out, spec.quality or [])
    assert [r.blocking for r in results] == [True, False]
    assert not results[1].passed  # the warn-level not_null on customer


CHECKS: list[tuple[str, dict[str, Any], bool, int]] = [
    # (id, check, passed, failed rows) over frame() with amount cast to float
    ("not-null-ok", {"type": "not_null", "column": "id"}, True, 0),
    ("not-null-fails", {"type": "not_null", "column": "name"}, False, 1),
    ("unique-fails", {"type": "unique", "column": "id"}, False, 2),
    ("unique-ignores-nulls", {"type": "unique", "column": "name"}, False, 2),
    ("range-ok", {"type": "range", "column": "amount", "min": -5, "max": 50}, True, 0),
    ("range-min", {"type": "range", "column": "amount", "min": 0}, False, 1),
    ("range-max", {"type": "range", "column": "amount", "max": 20}, False, 1),
    (
        "accepted-fails",
        {"type": "accepted_values", "column": "name", "values": ["a", "b"]},
        False,
        1,
    ),
    (
        "accepted-numbers-as-text",
        {"type": "accepted_values", "column": "amount", "values": ["10.5", "20.0", "30.0", "-1.0"]},
        True,
        0,
    ),
    ("regex-ok", {"type": "regex", "column": "day", "pattern": r"^\d{4}-\d{2}-\d{2}$"}, True, 0),
    ("regex-fails", {"type": "regex", "column": "paid", "pattern": "^[a-z]+$"}, False, 2),
]


@pytest.mark.parametrize(
    ("check", "passed", "failed"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS]
)
def test_quality_check(check: dict[str, Any], passed: bool, failed: int) -> None:
    data = frame().with_columns(pl.col("amount").cast(pl.Float64))
    [result] = run_quality_checks(data, [QualityCheck.model_validate(check)])
    assert (result.passed, result.failed_rows) == (passed, failed), result
    assert result.message == "ok" if passed else result.message


def test_missing_column_check_fails_not_skipped() -> None:
    [result] = run_quality_checks(frame(), [QualityCheck(type=CheckType.NOT_NULL, column="nope")])
    assert not result.passed and result.blocking
    assert "not found" in result.message


def test_checks_evaluated_together_keep_order() -> None:
    checks = [QualityCheck.model_validate(c[1]) for c in CHECKS[:3]]
    names = [r.name for r in run_quality_checks(frame(), checks)]
    assert names == ["not_null_id", "not_null_name", "unique_id"]


def test_runner_modules_stay_light() -> None:
    code = (
        "import sys, pipeline_runner.transform_plan, pipeline_runner.column_lineage;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
