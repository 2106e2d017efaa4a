"""OpenLineage events as plain JSON, the way openlineage-python writes them.

Importing openlineage-python loads its every transport (HTTP clients, Kafka, trio...),
about a second before a stage process could do any work. The events a stage and the
operator send use a handful of facets, so they are built here as dicts and written
like `Serde.to_json` (nulls dropped, keys sorted); a unit test builds the same events
with openlineage-python and compares them. Stdlib only.
"""

from __future__ import annotations

import json
from typing import Any

PRODUCER = "https://github.com/lineage-hub/lineage-hub"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACETS = "https://openlineage.io/spec/facets"

#: The schema each facet kind declares (the versions of openlineage-python 1.x).
FACET_SCHEMAS: dict[str, str] = {
    "SchemaDatasetFacet": f"{_FACETS}/1-2-0/SchemaDatasetFacet.json",
    "ColumnLineageDatasetFacet": f"{_FACETS}/1-2-0/ColumnLineageDatasetFacet.json",
    "DataQualityAssertionsDatasetFacet": f"{_FACETS}/1-1-0/DataQualityAssertionsDatasetFacet.json",
    "DataQualityMetricsInputDatasetFacet": (
        f"{_FACETS}/1-0-3/DataQualityMetricsInputDatasetFacet.json"
    ),
    "ErrorMessageRunFacet": f"{_FACETS}/1-0-1/ErrorMessageRunFacet.json",
    "JobTypeJobFacet": f"{_FACETS}/2-0-4/JobTypeJobFacet.json",
    "OutputStatisticsOutputDatasetFacet": (
        f"{_FACETS}/1-0-2/OutputStatisticsOutputDatasetFacet.json"
    ),
    "ParentRunFacet": f"{_FACETS}/1-2-0/ParentRunFacet.json",
    "ProcessingEngineRunFacet": f"{_FACETS}/1-1-1/ProcessingEngineRunFacet.json",
}

Json = dict[str, Any]
#: The event types of a RunEvent.
RUN_STATES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})


def facet(kind: str, fields: Json, *, schema_url: str | None = None) -> Json:
    """A facet of `kind` (a key of `FACET_SCHEMAS`, or any kind with `schema_url`)."""
    url = schema_url or f"{FACET_SCHEMAS[kind]}#/$defs/{kind}"
    return {"_producer": PRODUCER, "_schemaURL": url, **fields}


def run_event(
    event_type: str,
    *,
    event_time: str,
    run_id: str,
    run_facets: Json,
    job_namespace: str,
    job_name: str,
    job_facets: Json,
    inputs: list[Json],
    outputs: list[Json],
) -> Json:
    """A RunEvent; datasets are `{"namespace", "name", "facets", "inputFacets"}` (or
    `"outputFacets"`)."""
    if event_type not in RUN_STATES:
        raise ValueError(f"event type {event_type!r} is none of {sorted(RUN_STATES)}")
    return {
        "eventType": event_type,
        "eventTime": event_time,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": job_namespace, "name": job_name, "facets": job_facets},
        "inputs": inputs,
        "outputs": outputs,
    }


def job_type(job_kind: str, integration: str) -> Json:
    return facet(
        "JobTypeJobFacet",
        {"processingType": "BATCH", "integration": integration, "jobType": job_kind},
    )


def error_message(message: str, stack: str | None = None) -> Json:
    return facet(
        "ErrorMessageRunFacet",
        {"message": message, "programmingLanguage": "python", "stackTrace": stack},
    )


def _drop_nulls(value: Any) -> Any:
    """What `Serde.remove_nulls_and_enums` does to plain JSON values."""
    if isinstance(value, dict):
        kept = {k: _drop_nulls(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None}
    if isinstance(value, list):
        items = [_drop_nulls(v) for v in value if v is not None]
        return [v for v in items if v is not None and v != {}]
    return value


def to_json(event: Json) -> bytes:
    """The event as openlineage-python's transports send it."""
    return json.dumps(_drop_nulls(event), sort_keys=True).encode()
