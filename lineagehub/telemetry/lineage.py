"""Run-level OpenLineage events (the PipelineRun's own run, parent of the stage runs)."""

from __future__ import annotations

from datetime import datetime

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, job_type_job
from openlineage.client.serde import Serde

PRODUCER = "https://github.com/lineage-hub/lineage-hub"
INTEGRATION = "LINEAGE_HUB"


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
) -> bytes:
    """The JSON of one RunEvent for the run-level job, ready for `openlineage-events`."""
    run_facets = {}
    if error:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", producer=PRODUCER
        )
    event = RunEvent(
        eventType=RunState[event_type],
        eventTime=event_time.isoformat(),
        producer=PRODUCER,
        run=Run(runId=run_id, facets=run_facets),  # type: ignore[arg-type]
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
