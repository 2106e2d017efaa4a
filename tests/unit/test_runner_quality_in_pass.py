"""The transform's quality checks counted in the transform's own streaming pass
(`InPassChecks`): the same counts as checking the written output afterwards, a unique
check the transform's `deduplicate` guarantees taken as passed without a pass, and a
check that cannot run still named as the checks' fault, not the transform's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lineagehub.api import QualityCheck, StageName, TransformSpec
from pipeline_runner.transform_plan import (
    InPassChecks,
    compile_transform,
    run_quality_checks,
    unique_by_construction,
)
from tests.unit.test_runner_stages import (  # noqa: F401 - run is a fixture
    RunStage,
    assert_failed,
    make_config,
    run,
    write_source,
)

CHECKS: list[dict[str, Any]] = [
    {"type": "not_null", "column": "customer"},
    {"type": "unique", "column": "order_id"},
    {"type": "unique", "column": "customer"},
    {"type": "range", "column": "amount", "min": 0, "max": 50},
    {"type": "accepted_values", "column": "currency", "values": ["EUR", "USD"]},
    {"type": "regex", "column": "customer", "pattern": "^[a-z]+$", "severity": "warn"},
    {"type": "not_null", "column": "gone"},  # a column the output lacks: fails
]
ROWS = pl.DataFrame(
    {
        "order_id": [1, 1, 2, 3, 3, None, None, 4, 5, 6],
        "customer": ["acme", "acme", None, "Globex", "initech", "wayne", "x1", "acme", "b", "c"],
        "amount": [10.0, 10.0, 9.0, -1.0, 5.0, None, 7.0, 60.0, 1.0, 99.0],
        "currency": ["EUR", "EUR", "GBP", "USD", "EUR", "EUR", "JPY", "USD", "EUR", None],
        "status": ["ok"] * 10,
    }
)


def _spec(dedup: dict[str, Any] | None, **more: Any) -> TransformSpec:
    body: dict[str, Any] = {"quality": CHECKS, **more}
    if dedup is not None:
        body["deduplicate"] = dedup
    return TransformSpec.model_validate(body)


@pytest.mark.parametrize(
    "dedup",
    [
        None,
        {"columns": ["order_id"]},
        {"columns": ["order_id"], "keep": "last"},
        {"columns": ["order_id", "customer"]},
        {},  # whole rows
    ],
)
def test_in_pass_counts_are_the_counts_of_the_written_output(
    tmp_path: Path, dedup: dict[str, Any] | None
) -> None:
    spec = _spec(dedup, filter="amount IS NULL OR amount < 90")
    plan = compile_transform(ROWS.lazy(), spec)
    out = tmp_path / "out.parquet"
    in_pass = InPassChecks.of(plan, spec, plan.collect_schema().names())
    assert in_pass.query is not None
    _, row = pl.collect_all([plan.sink_parquet(out, lazy=True), in_pass.query])
    written = pl.scan_parquet(out)
    checks = spec.quality or []
    folded = run_quality_checks(written, checks, in_pass.counts(row))
    afterwards = run_quality_checks(written, checks)
    assert folded == afterwards
    # Every kind of check found something here, so an in-pass count of 0 would show.
    assert all(afterwards[i].failed_rows > 0 for i in (0, 3, 4, 5)), afterwards
    assert not afterwards[6].passed  # the missing column still fails


def test_a_unique_check_is_proven_only_by_a_deduplicate_on_that_column_alone() -> None:
    unique = QualityCheck.model_validate({"type": "unique", "column": "order_id"})
    not_null = QualityCheck.model_validate({"type": "not_null", "column": "order_id"})
    assert unique_by_construction(_spec({"columns": ["order_id"]}), unique)
    assert unique_by_construction(_spec({"columns": ["order_id"], "keep": "last"}), unique)
    assert not unique_by_construction(_spec({"columns": ["order_id", "customer"]}), unique)
    assert not unique_by_construction(_spec({}), unique)
    assert not unique_by_construction(_spec(None), unique)
    assert not unique_by_construction(_spec({"columns": ["order_id"]}), not_null)
    # Proven means: on data full of repeats and nulls, the output has none.
    for keep in ("first", "last"):
        spec = _spec({"columns": ["order_id"], "keep": keep})
        (result,) = run_quality_checks(compile_transform(ROWS.lazy(), spec).collect(), [unique])
        assert result.passed and result.failed_rows == 0, keep


def test_a_proven_unique_check_takes_no_pass() -> None:
    spec = _spec({"columns": ["order_id"]})
    plan = compile_transform(ROWS.lazy(), spec)
    in_pass = InPassChecks.of(plan, spec, plan.collect_schema().names())
    assert in_pass.known == {1: 0}  # the unique check on customer is not proven
    assert 2 not in in_pass.indexes and 2 not in in_pass.known


ORDERS = "order_id,customer,amount,currency\n1,acme,10.5,EUR\n2,globex,20.0,USD\n"


@pytest.mark.parametrize(
    "check",
    [
        {"type": "range", "column": "customer", "min": 0, "max": 1},  # text against numbers
        {"type": "regex", "column": "customer", "pattern": "^(?=a)"},  # Python regex, not Rust
    ],
)
def test_a_check_that_cannot_run_is_the_checks_fault(
    tmp_path: Path,
    run: RunStage,  # noqa: F811 - the fixture imported above
    check: dict[str, Any],
) -> None:
    write_source(tmp_path, ORDERS)
    assert run(make_config(tmp_path, StageName.EXTRACT)).code == 0
    spec = TransformSpec.model_validate({"quality": [check]})
    out = run(make_config(tmp_path, StageName.TRANSFORM, transform=spec))
    assert_failed(
        out, "TransformError", "quality checks on", "could not run", "spec.transform.quality"
    )


def test_a_transform_that_fails_is_still_the_transforms_fault(
    tmp_path: Path,
    run: RunStage,  # noqa: F811 - the fixture imported above
) -> None:
    write_source(tmp_path, ORDERS)
    assert run(make_config(tmp_path, StageName.EXTRACT)).code == 0
    spec = TransformSpec.model_validate(
        {"cast": {"customer": "int64"}, "quality": [{"type": "not_null", "column": "amount"}]}
    )
    out = run(make_config(tmp_path, StageName.TRANSFORM, transform=spec))
    assert_failed(out, "TransformError", "transform of", "failed")
