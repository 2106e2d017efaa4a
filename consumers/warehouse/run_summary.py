"""What the lineage warehouse holds of one run: the answer behind
`GET /api/v1/lineage/runs/{runId}` on the consumer's health port.

The operator asks this to write `status.lineage` back onto a PipelineRun, as it asks
`/api/v1/traces/{traceId}` for the trace (chdb admits one process per folder, so the
process that writes answers).
"""

from __future__ import annotations

import re
from typing import Any

from consumers.otel.backend import Backend
from lineagehub.warehouse_sql import runs_select

RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def run_summary(backend: Backend, run_id: str) -> dict[str, Any] | None:
    """State, times, inputs, outputs and column-edge count of `run_id`; None if unknown."""
    run_id = run_id.lower()
    if not RUN_ID.match(run_id):
        raise ValueError(f"not a run id (a UUID): {run_id!r}")
    db = backend.database
    runs = await backend.query(runs_select(db, f"e.RunId = '{run_id}'"))
    if not runs:
        return None
    run = runs[0]
    io = await backend.query(
        "SELECT Direction, DatasetNamespace, DatasetName, "
        "argMax(RowCount, EventTime) AS RowCount "
        f"FROM {db}.lineage_io WHERE RunId = '{run_id}' "
        "GROUP BY Direction, DatasetNamespace, DatasetName "
        "ORDER BY Direction, DatasetNamespace, DatasetName"
    )
    # The run's own column edges and its child runs' (a PipelineRun's stages).
    columns = await backend.query(
        "SELECT uniqExact(Src, Dst) AS edges "
        f"FROM {db}.lineage_edges WHERE Kind = 'column' AND (RunId = '{run_id}' OR RunId IN ("
        f"SELECT DISTINCT RunId FROM {db}.lineage_events WHERE ParentRunId = '{run_id}'))"
    )

    of_parent = runs_select(db, f"e.ParentRunId = '{run_id}'")
    children = await backend.query(
        f"SELECT RunId, JobName, State FROM ({of_parent}) ORDER BY StartTime"
    )

    def datasets(direction: str) -> list[dict[str, Any]]:
        return [
            {
                "namespace": r["DatasetNamespace"],
                "name": r["DatasetName"],
                "rowCount": None if r["RowCount"] is None else int(r["RowCount"]),
            }
            for r in io
            if r["Direction"] == direction
        ]

    return {
        "runId": run_id,
        "job": {"namespace": run["JobNamespace"], "name": run["JobName"]},
        "state": run["State"],
        "startTime": run["StartTime"],
        "endTime": run["EndTime"],
        "parentRunId": run["ParentRunId"] or None,
        "events": int(run["Events"]),
        "inputs": datasets("input"),
        "outputs": datasets("output"),
        "columnEdges": int(columns[0]["edges"]) if columns else 0,
        "children": [
            {"runId": c["RunId"], "job": c["JobName"], "state": c["State"]} for c in children
        ],
    }
