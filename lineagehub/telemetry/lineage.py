"""Run-level OpenLineage events (the PipelineRun's own run, parent of the stage runs)."""

from __future__ import annotations

from datetime import datetime

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, job_type_job
from openlineage.client.generated.base import RunFacet
from openlineage.client.serde import Serde

from lineagehub.datasets import redact_text

PRODUCER = "https://github.com/lineage-hub/lineage-hub"
INTEGRATION = "LINEAGE_HUB"
TRACE_FACET = "lineagehub_trace"


@attr.define
class TraceRunFacet(RunFacet):
    """The run's W3C trace (a custom run facet): joins lineage with the spans by trace id,
    in our warehouse and for any tool that reads the events."""

    traceId: str  # OpenLineage facet fields are camelCase
    traceparent: str

    @staticmethod
    def _get_schema() -> str:
        return f"{PRODUCER}/blob/main/docs/facets/TraceRunFacet.json"


def trace_facet(traceparent: str | None) -> dict[str, RunFacet]:
    """`{"lineagehub_trace": ...}` for a W3C traceparent, or nothing."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return {}
    return {
        TRACE_FACET: TraceRunFacet(
            traceId=parts[1], traceparent=traceparent or "", producer=PRODUCER
        )
    }


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
    run_facets: dict[str, RunFacet] = dict(trace_facet(traceparent))
    if error:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=redact_text(error), programmingLanguage="python", producer=PRODUCER
        )
    event = RunEvent(
        eventType=RunState[event_type],
        eventTime=event_time.isoformat(),
        producer=PRODUCER,
        run=Run(runId=run_id, facets=run_facets),
        job=Job(
            namespace=namespace,
            name=job,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH",
                    integration=INTEGRATION,
                    jobType="PIPELINE",
                    producer=PRODUCER,
                )
            },
        ),
        inputs=[InputDataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[OutputDataset(namespace=ns, name=name) for ns, name in outputs],
    )
    return str(Serde.to_json(event)).encode()
