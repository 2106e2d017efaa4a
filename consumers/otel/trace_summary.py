"""What ClickHouse holds of one trace: the answer behind `GET /api/v1/traces/{traceId}`.

The operator asks this to write `status.trace` back onto a PipelineRun. It goes
through the consumer because embedded ClickHouse (chdb) admits one process per
data folder; with a ClickHouse server the same query runs the same way.
"""

from __future__ import annotations

import re
from typing import Any

from consumers.otel.backend import Backend

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


async def trace_summary(backend: Backend, trace_id: str) -> dict[str, Any]:
    """Span count, span names and error count of `trace_id` in `otel_traces`."""
    if not TRACE_ID.match(trace_id):
        raise ValueError(f"not a trace id (32 lowercase hex digits): {trace_id!r}")
    rows = await backend.query(
        "SELECT count() AS spans, groupUniqArray(SpanName) AS names, "
        "countIf(StatusCode = 'Error') AS errors "
        f"FROM {backend.database}.otel_traces WHERE TraceId = '{trace_id}'"
    )
    row = rows[0] if rows else {}
    return {
        "traceId": trace_id,
        "spanCount": int(row.get("spans", 0)),
        "spanNames": sorted(row.get("names") or []),
        "errorSpans": int(row.get("errors", 0)),
    }
