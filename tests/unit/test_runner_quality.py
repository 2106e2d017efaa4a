"""The unique check counts, through its fast path (distinct values) and its exact one
(the rows involved), what its definition says: every non-null row whose value occurs
more than once."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagehub.api import QualityCheck
from pipeline_runner.quality import sample_failures
from pipeline_runner.transform_plan import run_quality_checks

UNIQUE = QualityCheck.model_validate({"type": "unique", "column": "v"})


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.lists(st.none() | st.integers(-3, 3), max_size=40))
def test_unique_counts_every_row_of_a_repeated_value(values: list[int | None]) -> None:
    (result,) = run_quality_checks(pl.DataFrame({"v": values}, schema={"v": pl.Int64}), [UNIQUE])
    expected = sum(1 for v in values if v is not None and values.count(v) > 1)
    assert result.failed_rows == expected
    assert result.passed == (expected == 0)


def test_a_repeated_value_is_sampled_once() -> None:
    data = pl.LazyFrame({"v": [1, 2, 2, None, None, 3, 3, 3]})
    (result,) = run_quality_checks(data, [UNIQUE])
    assert (result.failed_rows, result.passed) == (5, False)
    assert sample_failures(data, UNIQUE) == ["2", "3"]
