"""Table-driven tests of the lineage/trace verdicts written after a run ends."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from lineagehub_operator.decide import RunIds, decide
from lineagehub_operator.observed import JobState, ObservedJob
from lineagehub_operator.stores import MarquezRun, TraceCount, WarehouseRun
from lineagehub_operator.verify import (
    NOT_ASKED,
    Links,
    Lookup,
    awaiting,
    expected_spans,
    pending,
    verified_status,
)

from lineagehub.api.pipelinerun import STAGES, ConditionStatus, PipelineRun

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
IDS = RunIds(
    "019ac0f0-0000-7000-8000-000000000001", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
)
LINKS = Links("ns", "orders", "http://marquez/api/v1/jobs/runs/x", "http://jaeger/trace/y")
ALL_SPANS = frozenset({"PipelineRun orders", "stage extract", "stage transform", "stage load"})


def wh(state: str, column_edges: int = 0, stages: int = 3) -> WarehouseRun:
    return WarehouseRun(
        state, [("file", "/data/in.csv")], [("file", "/data/out.parquet")], column_edges, stages
    )


def finished_run() -> PipelineRun:
    run = PipelineRun.model_validate(
        {
            "metadata": {"name": "orders", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
            },
        }
    )
    jobs = {
        s: ObservedJob(stage=s, name=f"orders-{s}", uid=s, state=JobState.COMPLETE, attempts=1)
        for s in STAGES
    }
    for _ in range(3):
        run = run.model_copy(update={"status": decide(run, jobs, T0, IDS).status})
    assert run.status is not None and run.status.phase == "Succeeded"
    return run


def verdicts(run: PipelineRun, **lookups: object) -> dict[str, tuple[str, str]]:
    args = {
        "marquez": Lookup(
            value=MarquezRun(
                "COMPLETED", [("file", "/data/in.csv")], [("file", "/data/out.parquet")]
            )
        ),
        "column_lineage": True,
        "clickhouse": Lookup(value=TraceCount(12, ALL_SPANS)),
        "jaeger": Lookup(value=TraceCount(12, ALL_SPANS)),
        "expired": False,
    } | lookups
    status = verified_status(run, LINKS, now=T0, **args)  # type: ignore[arg-type]
    return {c.type: (c.status.value, c.reason) for c in status.conditions if c.type != "Succeeded"}


def test_expected_spans_are_root_plus_stages_that_ran() -> None:
    assert expected_spans(finished_run()) == ALL_SPANS


def test_all_recorded() -> None:
    run = finished_run()
    assert pending(run.status)  # type: ignore[arg-type]
    assert verdicts(run) == {
        "LineageRecorded": ("True", "Recorded"),
        "TraceRecorded": ("True", "Recorded"),
    }
    status = verified_status(
        run, LINKS, Lookup(value=MarquezRun("COMPLETED", [], [])), True,
        Lookup(value=TraceCount(12, ALL_SPANS)), Lookup(value=TraceCount(12, ALL_SPANS)), False, T0,
    )  # fmt: skip
    assert not pending(status)
    assert (
        status.trace is not None and status.trace.span_count == 12 and status.trace.all_stage_spans
    )
    assert status.lineage is not None and status.lineage.in_marquez
    assert status.lineage.outputs[0].name == "/data/out.parquet", (
        "falls back to the spec's datasets"
    )


@pytest.mark.parametrize(
    ("changes", "lineage", "trace"),
    [
        (
            {"marquez": Lookup(error="ConnectError")},
            ("Unknown", "MarquezUnavailable"),
            ("True", "Recorded"),
        ),
        (
            {"marquez": Lookup(error="ConnectError"), "expired": True},
            ("False", "MarquezUnavailable"),
            ("True", "Recorded"),
        ),
        (
            {"marquez": Lookup(configured=False)},
            ("False", "NoLineageStore"),
            ("True", "Recorded"),
        ),
        (
            {"marquez": Lookup(configured=False), "warehouse": Lookup(value=wh("COMPLETE"))},
            ("True", "Recorded"),
            ("True", "Recorded"),
        ),
        ({"warehouse": Lookup(value=wh("COMPLETE"))}, ("True", "Recorded"), ("True", "Recorded")),
        ({"warehouse": Lookup(value=None)}, ("Unknown", "Waiting"), ("True", "Recorded")),
        ({"warehouse": Lookup(value=wh("START"))}, ("Unknown", "Waiting"), ("True", "Recorded")),
        (
            {"warehouse": Lookup(value=wh("COMPLETE", stages=2))},
            ("Unknown", "Waiting"),
            ("True", "Recorded"),
        ),
        (
            {"warehouse": Lookup(value=None), "expired": True},
            ("False", "NotRecorded"),
            ("True", "Recorded"),
        ),
        (
            {"warehouse": Lookup(error="HTTP 503"), "marquez": Lookup(configured=False)},
            ("Unknown", "LineageStoreUnavailable"),
            ("True", "Recorded"),
        ),
        (
            {"warehouse": Lookup(value=wh("COMPLETE")), "marquez": Lookup(value=None)},
            ("Unknown", "Waiting"),
            ("True", "Recorded"),
        ),
        ({"marquez": Lookup(value=None)}, ("Unknown", "Waiting"), ("True", "Recorded")),
        (
            {"marquez": Lookup(value=MarquezRun("RUNNING", [], []))},
            ("Unknown", "Waiting"),
            ("True", "Recorded"),
        ),
        (
            {"marquez": Lookup(value=None), "expired": True},
            ("False", "NotRecorded"),
            ("True", "Recorded"),
        ),
        (
            {"clickhouse": Lookup(value=TraceCount(3, frozenset({"stage extract"})))},
            ("True", "Recorded"),
            ("Unknown", "Waiting"),
        ),
        (
            {"jaeger": Lookup(value=TraceCount(0, frozenset()))},
            ("True", "Recorded"),
            ("Unknown", "Waiting"),
        ),
        ({"jaeger": Lookup(configured=False)}, ("True", "Recorded"), ("True", "Recorded")),
        (
            {"clickhouse": Lookup(error="HTTP 503")},
            ("True", "Recorded"),
            ("Unknown", "TraceStoreUnavailable"),
        ),
        (
            {"clickhouse": Lookup(configured=False)},
            ("True", "Recorded"),
            ("False", "TraceStoreUnavailable"),
        ),
        (
            {"clickhouse": Lookup(value=TraceCount(1, frozenset())), "expired": True},
            ("True", "Recorded"),
            ("False", "NotRecorded"),
        ),
    ],
)
def test_verdicts(
    changes: dict[str, object], lineage: tuple[str, str], trace: tuple[str, str]
) -> None:
    got = verdicts(finished_run(), **changes)
    assert got == {"LineageRecorded": lineage, "TraceRecorded": trace}


def test_unknown_keeps_the_daemon_checking() -> None:
    run = finished_run()
    status = verified_status(
        run, LINKS, Lookup(error="down"), None, Lookup(value=TraceCount(12, ALL_SPANS)),
        Lookup(value=TraceCount(12, ALL_SPANS)), False, T0,
    )  # fmt: skip
    assert pending(status)
    lineage = status.condition("LineageRecorded")
    assert lineage is not None and lineage.status == ConditionStatus.UNKNOWN


def test_the_warehouse_alone_records_lineage_and_says_where() -> None:
    run = finished_run()
    status = verified_status(
        run, LINKS, Lookup(configured=False), None,
        Lookup(value=TraceCount(12, ALL_SPANS)), Lookup(value=TraceCount(12, ALL_SPANS)), False, T0,
        warehouse=Lookup(value=wh("COMPLETE", column_edges=4)),
    )  # fmt: skip
    lineage = status.lineage
    assert lineage is not None
    assert (lineage.in_clickhouse, lineage.in_marquez, lineage.stores) == (
        True,
        None,
        ["ClickHouse"],
    )
    assert lineage.column_lineage is True
    cond = status.condition("LineageRecorded")
    assert cond is not None and "ClickHouse" in cond.message


def test_a_store_that_lacks_the_run_is_named() -> None:
    run = finished_run()
    status = verified_status(
        run, LINKS, Lookup(value=MarquezRun("COMPLETED", [], [])), True,
        Lookup(value=TraceCount(12, ALL_SPANS)), Lookup(value=TraceCount(12, ALL_SPANS)), True, T0,
        warehouse=Lookup(value=wh("FAIL")),
    )  # fmt: skip
    cond = status.condition("LineageRecorded")
    assert cond is not None and cond.status == ConditionStatus.FALSE
    assert "ClickHouse has it FAIL" in cond.message
    assert status.lineage is not None and status.lineage.stores == ["Marquez"]


@pytest.mark.parametrize("configured", list(itertools.product([False, True], repeat=4)))
def test_a_run_ends_waiting_as_a_check_that_found_nothing_would_say(
    configured: tuple[bool, bool, bool, bool],
) -> None:
    """The status written as the run ends (no store asked) gives every verdict a check
    finding nothing would give, Unknown ones saying the stores were not asked yet."""
    marquez, warehouse, trace_store, jaeger = configured
    run = finished_run()
    ended = awaiting(
        run,
        LINKS,
        T0,
        marquez=marquez,
        warehouse=warehouse,
        trace_store=trace_store,
        jaeger=jaeger,
    )
    nothing = verified_status(
        run,
        LINKS,
        Lookup(configured=marquez),
        None,
        Lookup(configured=trace_store),
        Lookup(configured=jaeger),
        False,
        T0,
        warehouse=Lookup(configured=warehouse),
    )
    pairs = [
        (ended.condition(k), nothing.condition(k)) for k in ("LineageRecorded", "TraceRecorded")
    ]
    for said, found in pairs:
        assert said is not None and found is not None
        assert (said.status, said.reason) == (found.status, found.reason)
        unknown = said.status == ConditionStatus.UNKNOWN
        assert (said.message == NOT_ASKED) == unknown, said
        assert unknown or said.message == found.message
    assert pending(ended) == pending(nothing) == (trace_store or marquez or warehouse)
    assert ended.lineage is not None and ended.trace is not None
    assert ended.lineage.marquez_url == LINKS.marquez_url
    assert ended.trace.jaeger_url == LINKS.jaeger_url
    assert [(d.namespace, d.name) for d in ended.lineage.outputs] == [("file", "/data/out.parquet")]
    # Nothing was looked at: no store is said to hold the run, or to lack it.
    assert ended.lineage.in_marquez is None and ended.lineage.in_clickhouse is None
    assert ended.trace.span_count is None and ended.trace.all_stage_spans is None
    assert ended.phase == run.status.phase and ended.stages == run.status.stages  # type: ignore[union-attr]
