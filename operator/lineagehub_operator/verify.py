"""After a run ends: is its lineage in Marquez and its trace in ClickHouse and Jaeger?

Pure: the daemon looks the run up in the stores and hands the answers here;
this turns them into `status.lineage`, `status.trace` and the conditions
`LineageRecorded` / `TraceRecorded` (Unknown while waiting, True once seen,
False with a reason once the deadline passed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from lineagehub.api.pipelinerun import (
    CONDITION_LINEAGE_RECORDED,
    CONDITION_TRACE_RECORDED,
    ConditionStatus,
    DatasetRef,
    LineageStatus,
    Phase,
    PipelineRun,
    PipelineRunStatus,
    Reason,
    StageStatus,
    TraceStatus,
    set_condition,
)
from lineagehub.datasets import dataset_of
from lineagehub_operator.stores import MarquezRun, TraceCount, WarehouseRun

T = TypeVar("T")
#: Marquez's run state for each terminal phase.
MARQUEZ_STATE = {Phase.SUCCEEDED: "COMPLETED", Phase.FAILED: "FAILED", Phase.CANCELLED: "ABORTED"}


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """One store's answer: not configured, unavailable (error), not found (None) or found."""

    configured: bool = True
    value: T | None = None
    error: str | None = None


@dataclass(frozen=True)
class Links:
    namespace: str
    job: str
    marquez_url: str | None
    jaeger_url: str | None


def ran_stages(status: PipelineRunStatus) -> list[StageStatus]:
    """The stages this run ran (a re-run's reused stages ran in the earlier run: their
    spans and lineage are that run's)."""
    return [
        s
        for s in status.stages
        if s.phase in {Phase.SUCCEEDED, Phase.FAILED} and s.reason != Reason.REUSED
    ]


def expected_spans(run: PipelineRun) -> frozenset[str]:
    """The root span and one span per stage that ran."""
    status = run.status
    assert status is not None
    ran = {s.name.value for s in ran_stages(status)}
    return frozenset({f"PipelineRun {run.metadata.name}", *(f"stage {s}" for s in ran)})


def pending(status: PipelineRunStatus) -> bool:
    """A finished run whose stores have not all been checked to a verdict."""
    if status.phase not in MARQUEZ_STATE:
        return False
    for kind in (CONDITION_LINEAGE_RECORDED, CONDITION_TRACE_RECORDED):
        cond = status.condition(kind)
        if cond is None or cond.status == ConditionStatus.UNKNOWN:
            return True
    return False


#: The OpenLineage state the lineage warehouse derives for each terminal phase.
WAREHOUSE_STATE = {Phase.SUCCEEDED: "COMPLETE", Phase.FAILED: "FAIL", Phase.CANCELLED: "ABORT"}


def _lineage(
    run: PipelineRun,
    status: PipelineRunStatus,
    links: Links,
    marquez: Lookup[MarquezRun],
    column_lineage: bool | None,
    warehouse: Lookup[WarehouseRun],
    expired: bool,
) -> tuple[LineageStatus, ConditionStatus, str, str]:
    """Checked against every configured lineage store: True once each holds the run in
    its final state; False with a reason only when a configured store lacks it (or none
    is configured); Unknown while waiting."""
    src, sink = dataset_of(run.spec.source.uri), dataset_of(run.spec.sink.uri)
    phase = status.phase
    assert phase in MARQUEZ_STATE
    checks: list[tuple[str, Lookup[Any], str, str | None]] = []  # store, lookup, wanted, found
    if warehouse.configured:
        wh = warehouse.value
        found = wh.state if wh else None
        ran = len(ran_stages(status))
        if wh is not None and found == WAREHOUSE_STATE[phase] and wh.finished_children < ran:
            # The run's own events are in, its stages' not all yet: not the whole lineage.
            found = f"{found} with {wh.finished_children} of {ran} stage runs finished"
        checks.append(("ClickHouse", warehouse, WAREHOUSE_STATE[phase], found))
    if marquez.configured:
        mq = marquez.value
        checks.append(("Marquez", marquez, MARQUEZ_STATE[phase], mq.state if mq else None))
    holding = [name for name, _, wanted, found in checks if found == wanted]
    known = marquez.value or warehouse.value
    columns = column_lineage
    if warehouse.value is not None and warehouse.value.column_edges > 0:
        columns = True
    elif columns is None and warehouse.value is not None:
        columns = False
    lineage = LineageStatus(
        namespace=links.namespace,
        job=links.job,
        run_id=status.run_id,
        inputs=[
            DatasetRef(namespace=ns, name=n)
            for ns, n in (known.inputs if known and known.inputs else [src])
        ],
        outputs=[
            DatasetRef(namespace=ns, name=n)
            for ns, n in (known.outputs if known and known.outputs else [sink])
        ],
        marquez_url=links.marquez_url,
        in_marquez="Marquez" in holding if marquez.configured else None,
        in_clickhouse="ClickHouse" in holding if warehouse.configured else None,
        stores=holding,
        column_lineage=columns,
    )
    late = ConditionStatus.FALSE if expired else ConditionStatus.UNKNOWN
    if not checks:
        return (
            lineage,
            ConditionStatus.FALSE,
            Reason.NO_LINEAGE_STORE,
            "no lineage store is configured on the operator "
            "(LINEAGEHUB_LINEAGE_STORE_URL for ClickHouse, MARQUEZ_URL for Marquez)",
        )
    for name, lookup, _, _ in checks:
        if lookup.error:
            reason = (
                Reason.MARQUEZ_UNAVAILABLE
                if name == "Marquez"
                else Reason.LINEAGE_STORE_UNAVAILABLE
            )
            return lineage, late, reason, f"{name} did not answer: {lookup.error}"
    if len(holding) == len(checks):
        wanted = WAREHOUSE_STATE[phase]
        return (
            lineage,
            ConditionStatus.TRUE,
            Reason.RECORDED,
            f"{' and '.join(holding)} {'hold' if len(holding) > 1 else 'holds'} "
            f"run {status.run_id} {wanted}",
        )
    missing = [
        f"{name} has it {found}" if found else f"{name} has no event of it yet"
        for name, _, wanted, found in checks
        if found != wanted
    ]
    reason = Reason.NOT_RECORDED if expired else Reason.WAITING
    wanted = WAREHOUSE_STATE[phase]
    return lineage, late, reason, f"run {status.run_id} should be {wanted}: {'; '.join(missing)}"


def _trace(
    run: PipelineRun,
    status: PipelineRunStatus,
    links: Links,
    clickhouse: Lookup[TraceCount],
    jaeger: Lookup[TraceCount],
    expired: bool,
) -> tuple[TraceStatus, ConditionStatus, str, str]:
    want = expected_spans(run)
    in_ch = clickhouse.value or TraceCount(0, frozenset())
    in_jaeger = jaeger.value or TraceCount(0, frozenset())
    ch_complete = want <= in_ch.names
    jaeger_complete = (not jaeger.configured) or want <= in_jaeger.names
    trace = TraceStatus(
        trace_id=status.trace_id,
        jaeger_url=links.jaeger_url,
        span_count=in_ch.spans if clickhouse.configured else None,
        all_stage_spans=ch_complete if clickhouse.configured else None,
    )
    late = ConditionStatus.FALSE if expired else ConditionStatus.UNKNOWN
    if not clickhouse.configured:
        return (
            trace,
            ConditionStatus.FALSE,
            Reason.TRACE_STORE_UNAVAILABLE,
            "no trace store is configured on the operator",
        )
    for name, lookup in (("ClickHouse", clickhouse), ("Jaeger", jaeger)):
        if lookup.error:
            return (
                trace,
                late,
                Reason.TRACE_STORE_UNAVAILABLE,
                f"{name} did not answer: {lookup.error}",
            )
    if ch_complete and jaeger_complete:
        where = "ClickHouse and Jaeger" if jaeger.configured else "ClickHouse"
        return (
            trace,
            ConditionStatus.TRUE,
            Reason.RECORDED,
            f"{in_ch.spans} spans in {where}, every stage's span among them",
        )
    missing = sorted(want - in_ch.names) or sorted(want - in_jaeger.names)
    reason = Reason.NOT_RECORDED if expired else Reason.WAITING
    return trace, late, reason, f"{in_ch.spans} spans so far; missing {', '.join(missing)}"


def verified_status(
    run: PipelineRun,
    links: Links,
    marquez: Lookup[MarquezRun],
    column_lineage: bool | None,
    clickhouse: Lookup[TraceCount],
    jaeger: Lookup[TraceCount],
    expired: bool,
    now: datetime,
    warehouse: Lookup[WarehouseRun] | None = None,
) -> PipelineRunStatus:
    """The run's status with lineage, trace and their two conditions filled in."""
    assert run.status is not None
    status = run.status.model_copy(deep=True)
    gen = run.metadata.generation
    lineage, l_status, l_reason, l_message = _lineage(
        run,
        status,
        links,
        marquez,
        column_lineage,
        warehouse or Lookup(configured=False),
        expired,
    )
    trace, t_status, t_reason, t_message = _trace(run, status, links, clickhouse, jaeger, expired)
    status.lineage, status.trace = lineage, trace
    for kind, cond, reason, message in (
        (CONDITION_LINEAGE_RECORDED, l_status, l_reason, l_message),
        (CONDITION_TRACE_RECORDED, t_status, t_reason, t_message),
    ):
        status.conditions = set_condition(
            status.conditions,
            type_=kind,
            status=cond,
            reason=reason,
            message=message,
            observed_generation=gen,
            at=now,
        )
    return status


#: A verdict's message before the stores have been asked about the run.
NOT_ASKED = (
    "not asked yet: the stores get a run's last records within seconds of its end "
    "and are asked from a second after it"
)


def awaiting(
    run: PipelineRun,
    links: Links,
    now: datetime,
    *,
    marquez: bool,
    warehouse: bool,
    trace_store: bool,
    jaeger: bool,
) -> PipelineRunStatus:
    """The status a run ends with, in the same write as its end: its links, and each
    verdict Unknown (Waiting, `NOT_ASKED`) without asking the stores, which cannot hold
    the run yet (its COMPLETE event and root span are sent in this very pass). A verdict
    the configuration alone decides (no store configured) is given at once, as a check
    would give it. The flags say which stores are configured."""
    status = verified_status(
        run,
        links,
        Lookup(configured=marquez),
        None,
        Lookup(configured=trace_store),
        Lookup(configured=jaeger),
        False,
        now,
        warehouse=Lookup(configured=warehouse),
    )
    if status.lineage is not None:
        status.lineage.in_marquez = status.lineage.in_clickhouse = None
    if status.trace is not None:
        status.trace.span_count = status.trace.all_stage_spans = None
    status.conditions = [
        c.model_copy(update={"message": NOT_ASKED})
        if c.type in (CONDITION_LINEAGE_RECORDED, CONDITION_TRACE_RECORDED)
        and c.status == ConditionStatus.UNKNOWN
        else c
        for c in status.conditions
    ]
    return status
