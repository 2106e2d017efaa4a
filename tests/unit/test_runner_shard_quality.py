"""A sharded stage's quality checks summed once: the committing shard's COMPLETE event
(`pipeline_runner.shard_results.combine`, from the shards' full results) and the run's
status (`lineagehub_operator.shards.combined_outcome`, from the shards' termination
messages) say the same thing about every check."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lineagehub_operator.shards import combined_outcome

from lineagehub.api import StageName
from lineagehub.shard_quality import SAMPLE_SIZE, Verdict, merge
from pipeline_runner.result import MAX_SAMPLE_CHARS, QualityOutcome, StageResult
from pipeline_runner.shard_results import combine

#: (name, type, column, severity): a check's severity is its spec's, the same on every shard.
CHECKS = [
    ("ids", "not_null", "order_id", "fail"),
    ("amount", "range", "amount", "warn"),
    ("cur", "regex", "c", "fail"),
]
TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=100)


@st.composite
def shard_checks(draw: st.DrawFn) -> list[QualityOutcome]:
    """One shard's checks: some of the stage's checks (a termination message short of
    room leaves passing ones out), in an order of its own."""
    keys = draw(st.permutations(CHECKS))
    out = []
    for name, kind, column, severity in keys[: draw(st.integers(1, len(keys)))]:
        failed = draw(st.integers(0, 50))
        out.append(
            QualityOutcome(
                name=name,
                type=kind,
                column=column,
                severity=severity,
                success=failed == 0,
                failed_rows=failed,
                message=f"{failed} rows failed {name}",
                sample=draw(st.lists(TEXT, max_size=min(failed, SAMPLE_SIZE))),
            )
        )
    return out


def _pod(index: int, result: StageResult) -> dict[str, Any]:
    return {
        "metadata": {
            "creationTimestamp": "2026-11-30T09:00:00Z",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"message": result.termination_message()}}}
            ]
        },
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(shard_checks(), min_size=1, max_size=4))
def test_the_complete_event_and_the_status_agree_on_every_check(
    shards: list[list[QualityOutcome]],
) -> None:
    results = [
        StageResult(stage=StageName.TRANSFORM, records_in=10, records_out=10, quality=q)
        for q in shards
    ]
    event = combine(results, 1.0).quality
    message, reason = combined_outcome([_pod(i, r) for i, r in enumerate(results)], len(shards))
    assert reason is None and message is not None
    status = json.loads(message)["quality"]
    assert [(q["name"], q["type"], q["column"]) for q in status] == [
        (q.name, q.type, q.column) for q in event
    ]
    for seen, q in zip(status, event, strict=True):
        assert (seen["success"], seen["failedRows"]) == (q.success, q.failed_rows)
        assert seen["sample"] == [s[:MAX_SAMPLE_CHARS] for s in q.sample]
        # and the sum is the sum of what the shards reported
        reported = [c for shard in shards for c in shard if c.name == q.name]
        assert q.failed_rows == sum(c.failed_rows for c in reported)
        assert q.success is all(c.success for c in reported)


def test_the_rule_keys_checks_and_keeps_only_failing_samples_in_shard_order() -> None:
    def v(row: tuple[str, bool, int, list[str]]) -> Verdict:
        return Verdict((row[0], "t", "c"), row[1], row[2], row[3])

    merged = merge(
        [
            [("a", True, 0, ["passing shard's note"]), ("b", False, 2, ["b1", "b2"])],
            [("b", False, 4, ["b3", "b4", "b5", "b6"]), ("a", False, 1, ["a1"])],
            [("c", True, 0, [])],
        ],
        v,
    )
    assert [(m.first[0], m.success, m.failed_rows, m.sample) for m in merged] == [
        ("a", False, 1, ["a1"]),
        ("b", False, 6, ["b1", "b2", "b3", "b4", "b5"]),
        ("c", True, 0, []),
    ]
    assert merged[0].first_failed == ("a", False, 1, ["a1"])


@pytest.mark.parametrize("severities", [("fail", "warn"), ("fail", "fail")])
def test_two_checks_sharing_a_name_stay_two_checks_on_both_views(
    severities: tuple[str, str],
) -> None:
    """Names need not be unique (an unnamed check is `<type>_<column>`): two range
    checks on one column (min and max) are two checks, sharded or not, whatever their
    severities, and a warn-level failure never reads as a fail-level one."""

    def shard(low_failed: int, high_failed: int) -> list[QualityOutcome]:
        return [
            QualityOutcome(
                name="range_amount",
                type="range",
                column="amount",
                severity=severity,
                success=failed == 0,
                failed_rows=failed,
                message=f"{failed} rows",
                sample=[str(failed)] if failed else [],
            )
            for severity, failed in zip(severities, (low_failed, high_failed), strict=True)
        ]

    shards = [shard(0, 2), shard(0, 4)]
    results = [
        StageResult(stage=StageName.TRANSFORM, records_in=9, records_out=9, quality=q)
        for q in shards
    ]
    want = [(severities[0], True, 0), (severities[1], False, 6)]
    event = combine(results, 1.0).quality
    assert [(q.severity, q.success, q.failed_rows) for q in event] == want
    message, reason = combined_outcome([_pod(i, r) for i, r in enumerate(results)], 2)
    assert reason is None and message is not None
    status = json.loads(message)["quality"]
    assert [(q["severity"], q["success"], q["failedRows"]) for q in status] == want
