"""SQL over the lineage warehouse that both its writer (consumers) and its readers
(the gateway) need, kept in one place. Stdlib only; the tables are created by
`consumers/warehouse/ddl.py`.
"""

from __future__ import annotations

TERMINAL_STATES = ("COMPLETE", "FAIL", "ABORT")


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def runs_select(db: str, where: str = "1") -> str:
    """One row per run, derived from its events by eventTime, never by arrival.

    State: a terminal event (COMPLETE, FAIL, ABORT) beats START and RUNNING whatever
    their times; among terminals the latest eventTime wins; OTHER never sets the state
    (a run with only OTHER events is `OTHER`). Start = earliest START (earliest event
    when no START came), end = latest terminal. Facet-derived columns take the latest
    event that carries them. `where` filters events before grouping. Events of equal
    eventTime: a FAIL beats another terminal, else the event's hash decides, so an
    answer never depends on the order ClickHouse reads the rows in.
    """
    terminal = "e.EventType IN ('COMPLETE', 'FAIL', 'ABORT')"
    latest = "(e.EventTime, e.EventHash)"  # the latest event, ties broken by its hash
    # Arguments are qualified (`e.`): ClickHouse resolves a bare name to a same-named
    # alias first, which would nest aggregates.
    return f"""
SELECT
    e.RunId AS RunId,
    argMax(e.JobNamespace, {latest}) AS JobNamespace,
    argMax(e.JobName, {latest}) AS JobName,
    argMax(
        e.EventType,
        (
            {terminal},
            e.EventType != 'OTHER',
            e.EventTime,
            e.EventType = 'RUNNING',
            e.EventType = 'FAIL',
            e.EventHash,
        )
    ) AS State,
    if(
        countIf(e.EventType = 'START') > 0,
        minIf(e.EventTime, e.EventType = 'START'),
        min(e.EventTime)
    ) AS StartTime,
    if(countIf({terminal}) > 0, maxIf(e.EventTime, {terminal}), NULL) AS EndTime,
    max(e.EventTime) AS LastEventTime,
    argMaxIf(e.ParentRunId, {latest}, e.ParentRunId != '') AS ParentRunId,
    argMaxIf(e.ParentJobNamespace, {latest}, e.ParentRunId != '') AS ParentJobNamespace,
    argMaxIf(e.ParentJobName, {latest}, e.ParentRunId != '') AS ParentJobName,
    argMaxIf(e.RootRunId, {latest}, e.RootRunId != '') AS RootRunId,
    argMaxIf(e.TraceId, {latest}, e.TraceId != '') AS TraceId,
    argMaxIf(e.ErrorMessage, {latest}, e.ErrorMessage != '') AS ErrorMessage,
    uniqExact(e.EventHash) AS Events
FROM {db}.lineage_events AS e
WHERE e.Kind = 'run' AND ({where})
GROUP BY e.RunId"""
