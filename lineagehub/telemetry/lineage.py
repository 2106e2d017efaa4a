"""Run-level OpenLineage events (the PipelineRun's own run, parent of the stage runs)."""

from __future__ import annotations

from datetime import datetime

from lineagehub.datasets import redact_text
from lineagehub.telemetry import openlineage_json as ol
from lineagehub.telemetry.openlineage_json import PRODUCER

__all__ = ["INTEGRATION", "PRODUCER", "TRACE_FACET", "run_event", "trace_facet"]

INTEGRATION = "LINEAGE_HUB"
TRACE_FACET = "lineagehub_trace"
#: The schema of the trace run facet (a custom facet of ours).
TRACE_FACET_SCHEMA = f"{PRODUCER}/blob/main/docs/facets/TraceRunFacet.json"


def trace_facet(traceparent: str | None) -> dict[str, ol.Json]:
    """`{"lineagehub_trace": ...}` for a W3C traceparent, or nothing: the run's trace
    id joins lineage with the spans, in our warehouse and for any tool that reads the
    events."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return {}
    fields = {"traceId": parts[1], "traceparent": traceparent or ""}
    return {TRACE_FACET: ol.facet("TraceRunFacet", fields, schema_url=TRACE_FACET_SCHEMA)}


def run_event(
    event_type: str,
    *,
    run_id: str,
    namespace: str,
    job: str,
    event_time: datetime,
    inputs: list[tuple[str, str]] = [],  # noqa: B006 - read only
    outputs: list[tuple[str, str]] = [],  # noqa: B006 - read only
    error: str | None = None,
    traceparent: str | None = None,
) -> bytes:
    """The JSON of one RunEvent for the run-level job, ready for `openlineage-events`."""
    run_facets = trace_facet(traceparent)
    if error:
        run_facets["errorMessage"] = ol.error_message(redact_text(error))
    event = ol.run_event(
        event_type,
        event_time=event_time.isoformat(),
        run_id=run_id,
        run_facets=run_facets,
        job_namespace=namespace,
        job_name=job,
        job_facets={"jobType": ol.job_type("PIPELINE", INTEGRATION)},
        inputs=[
            {"namespace": ns, "name": name, "facets": {}, "inputFacets": {}} for ns, name in inputs
        ],
        outputs=[
            {"namespace": ns, "name": name, "facets": {}, "outputFacets": {}}
            for ns, name in outputs
        ],
    )
    return ol.to_json(event)
