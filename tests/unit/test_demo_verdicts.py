"""The demo's verdicts: read from a run's status, each with its own timeout, and said."""

from __future__ import annotations

from typing import Any

from stack.verdicts import NOT_REACHED, TIMED_OUT, Timeouts, Watch, failure_text, table


def status(**conditions: tuple[str, str, str]) -> dict[str, Any]:
    """A PipelineRun status with the given conditions: kind=(status, reason, message)."""
    return {
        "phase": "Running",
        "conditions": [
            {"type": kind, "status": s, "reason": r, "message": m}
            for kind, (s, r, m) in conditions.items()
        ],
    }


RUNNING = ("Unknown", "Running", "stage extract")
DONE = ("True", "Succeeded", "Stages completed: 3/3")
WAITING = ("Unknown", "Waiting", "3 spans so far; missing stage load")
RECORDED = ("True", "Recorded", "12 spans in ClickHouse and Jaeger")


def test_all_true_is_done_without_failures() -> None:
    watch = Watch(Timeouts(), applied_at=0.0)
    watch.observe(status(Succeeded=RUNNING), now=5.0)
    assert not watch.done
    first = watch.awaited()
    assert first is not None and first.kind == "Succeeded"
    watch.observe(status(Succeeded=DONE, TraceRecorded=WAITING, LineageRecorded=WAITING), 20.0)
    assert not watch.done
    awaited = watch.awaited()
    assert awaited is not None and (awaited.kind, awaited.reason) == ("TraceRecorded", "Waiting")
    watch.observe(status(Succeeded=DONE, TraceRecorded=RECORDED, LineageRecorded=RECORDED), 25.0)
    assert watch.done
    assert watch.failures() == []


def test_store_verdicts_are_timed_from_the_runs_end_not_from_the_apply() -> None:
    """A run that took 250 s of a 300 s budget still gets the stores' full 60 s."""
    watch = Watch(Timeouts(succeeded=300, trace=60, lineage=90), applied_at=0.0)
    watch.observe(status(Succeeded=DONE, TraceRecorded=WAITING, LineageRecorded=WAITING), 250.0)
    assert watch.left("TraceRecorded", 250.0) == 60
    watch.observe(status(Succeeded=DONE, TraceRecorded=WAITING, LineageRecorded=WAITING), 309.0)
    assert not watch.done
    watch.observe(status(Succeeded=DONE, TraceRecorded=WAITING, LineageRecorded=WAITING), 310.0)
    trace = watch.verdicts["TraceRecorded"]
    assert trace.status == TIMED_OUT
    assert trace.why() == (
        "TraceRecorded timed out after 60 s; last said Waiting: 3 spans so far; missing stage load"
    )
    assert not watch.done  # LineageRecorded has its own, longer timeout
    watch.observe(status(Succeeded=DONE, LineageRecorded=RECORDED), 320.0)
    assert watch.done
    assert [v.kind for v in watch.failures()] == ["TraceRecorded"]


def test_a_late_look_names_the_timeout_not_the_time_of_the_look() -> None:
    watch = Watch(Timeouts(succeeded=1), applied_at=0.0)
    watch.observe(status(Succeeded=RUNNING), 1.7)
    assert watch.verdicts["Succeeded"].why().startswith("Succeeded timed out after 1 s")


def test_a_final_verdict_is_kept_when_a_later_read_lacks_it() -> None:
    watch = Watch(Timeouts(), applied_at=0.0)
    watch.observe(status(Succeeded=("False", "QualityCheckFailed", "amount_below_100")), 10.0)
    watch.observe(status(Succeeded=RUNNING), 11.0)
    assert watch.verdicts["Succeeded"].status == "False"
    assert watch.finished_at == 10.0


def test_a_run_that_never_ends_times_out_and_the_stores_are_not_reached() -> None:
    watch = Watch(Timeouts(succeeded=30, trace=999, lineage=999), applied_at=100.0)
    watch.observe(status(Succeeded=RUNNING), 129.0)
    assert not watch.done
    watch.observe(status(Succeeded=RUNNING), 130.0)
    assert watch.done
    kinds = {v.kind: v.status for v in watch.failures()}
    assert kinds == {
        "Succeeded": TIMED_OUT,
        "TraceRecorded": NOT_REACHED,
        "LineageRecorded": NOT_REACHED,
    }
    text = failure_text("orders-daily", watch.failures())
    assert text.startswith("demo: orders-daily failed: Succeeded timed out after 30 s")
    assert "last said Running: stage extract" in text
    assert "TraceRecorded not reached: the run did not finish" in text


def test_false_verdicts_are_named_with_reason_and_message() -> None:
    watch = Watch(Timeouts(), applied_at=0.0)
    watch.observe(
        status(
            Succeeded=("False", "QualityCheckFailed", "amount_below_100: 41 rows"),
            TraceRecorded=RECORDED,
            LineageRecorded=("False", "NotRecorded", "ClickHouse has no event of it yet"),
        ),
        30.0,
    )
    assert watch.done
    assert failure_text("q", watch.failures()) == (
        "demo: q failed: Succeeded is False (QualityCheckFailed: amount_below_100: 41 rows); "
        "LineageRecorded is False (NotRecorded: ClickHouse has no event of it yet)"
    )


def test_missing_conditions_are_unknown_and_malformed_ones_ignored() -> None:
    watch = Watch(Timeouts(), applied_at=0.0)
    watch.observe({"conditions": ["junk", {"type": "Other", "status": "True"}]}, 1.0)
    assert {v.status for v in watch.verdicts.values()} == {"Unknown"}
    watch.observe({}, 2.0)
    assert not watch.done


def test_table_aligns_columns_and_cuts_only_for_a_terminal() -> None:
    watch = Watch(Timeouts(), applied_at=0.0)
    long = "x" * 300
    watch.observe(
        status(Succeeded=DONE, TraceRecorded=("True", "Recorded", long), LineageRecorded=RECORDED),
        1.0,
    )
    rows = table(list(watch.verdicts.values()), width=80)
    assert rows[0].split() == ["VERDICT", "STATUS", "REASON", "MESSAGE"]
    starts = {row.index(row.split()[1]) for row in rows}
    assert len(starts) == 1  # the STATUS column starts at one offset on every row
    assert all(len(row) <= 80 for row in rows)
    assert rows[2].endswith("…")
    assert table(list(watch.verdicts.values()))[2].endswith(long)
