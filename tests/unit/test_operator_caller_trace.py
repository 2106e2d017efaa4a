"""A run created by a traced call (the gateway's `lineagehub.io/traceparent`) continues
that trace: the run's trace id is the caller's and its root span is the caller span's
child; without a valid annotation the run starts a trace of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lineagehub_operator.decide import RunIds, decide
from lineagehub_operator.run_telemetry import root_span

from lineagehub.api.pipelinerun import PipelineRun
from lineagehub.telemetry.spans import RUN_TRACEPARENT_ANNOTATION, caller_context

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def run_with(annotations: dict[str, str] | None) -> PipelineRun:
    return PipelineRun.model_validate(
        {
            "metadata": {
                "name": "orders",
                "namespace": "ns",
                "uid": "u-1",
                "generation": 1,
                "annotations": annotations,
            },
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
            },
        }
    )


def started(run: PipelineRun) -> PipelineRun:
    return run.model_copy(update={"status": decide(run, {}, T0, IDS).status})


def test_the_run_continues_the_callers_trace_and_its_root_span_is_the_callers_child() -> None:
    run = started(run_with({RUN_TRACEPARENT_ANNOTATION: CALLER}))
    assert run.status is not None
    assert run.status.trace_id == CALLER_TRACE
    # the run's own root span id, in the caller's trace: what the stages' spans parent to
    assert run.status.traceparent == f"00-{CALLER_TRACE}-{IDS.span_id}-01"
    span = root_span(
        run, run.status.traceparent, "orders", "COMPLETE", T0 + timedelta(seconds=1), ""
    )
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        CALLER_TRACE,
        IDS.span_id,
        CALLER_SPAN,
    )


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {RUN_TRACEPARENT_ANNOTATION: "not a traceparent"},
        {RUN_TRACEPARENT_ANNOTATION: f"00-{'0' * 32}-{CALLER_SPAN}-01"},  # invalid ids
        {RUN_TRACEPARENT_ANNOTATION: f"00-{CALLER_TRACE}-{'0' * 16}-01"},
        {RUN_TRACEPARENT_ANNOTATION: f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01"},  # version ff: invalid
        {RUN_TRACEPARENT_ANNOTATION: CALLER.upper()},  # W3C ids are lower-case hex
    ],
)
def test_without_a_valid_caller_the_run_starts_its_own_trace(
    annotations: dict[str, str] | None,
) -> None:
    run = started(run_with(annotations))
    assert run.status is not None
    assert run.status.trace_id == IDS.trace_id
    span = root_span(run, run.status.traceparent or "", "orders", "FAIL", T0, "boom")
    assert span.parent_span_id == "" and span.trace_id == IDS.trace_id


def test_an_annotation_changed_after_the_start_does_not_reparent_the_root_span() -> None:
    run = started(run_with({RUN_TRACEPARENT_ANNOTATION: CALLER}))
    assert run.status is not None and run.status.traceparent is not None
    other = f"00-{'ab' * 16}-{'cd' * 8}-01"
    meta = run.metadata.model_copy(update={"annotations": {RUN_TRACEPARENT_ANNOTATION: other}})
    edited = run.model_copy(update={"metadata": meta})
    span = root_span(edited, run.status.traceparent, "orders", "COMPLETE", T0, "")
    assert span.trace_id == CALLER_TRACE and span.parent_span_id == ""
    assert caller_context(edited.metadata.annotations) == ("ab" * 16, "cd" * 8)
