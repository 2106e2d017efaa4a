"""OpenLineage events for the lineage warehouse tests, built with openlineage-python
the way its users build them (then serialized with its own Serde)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from openlineage.client.event_v2 import (
    DatasetEvent,
    InputDataset,
    Job,
    JobEvent,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    error_message_run,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.0.0/client/python"
#: The edge rows held by `lineage_edges`' projection sorted by destination (one per edge
#: row when nothing is doubled).
PROJECTED_EDGES = (
    "SELECT sum(rows) AS n FROM system.projection_parts WHERE database = 'otel' "
    "AND table = 'lineage_edges' AND name = 'by_dst' AND active"
)
T0 = datetime(2026, 11, 1, 12, 0, 0)  # naive, as many producers send


def schema(*fields: tuple[str, str]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields]
    )


def column_lineage(
    mapping: dict[str, list[tuple[str, str, str]]], kind: str = "DIRECT"
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            out: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=ns,
                        name=name,
                        field=field,
                        transformations=[
                            column_lineage_dataset.Transformation(
                                type=kind, subtype="IDENTITY", description="", masking=False
                            )
                        ],
                    )
                    for ns, name, field in inputs
                ]
            )
            for out, inputs in mapping.items()
        }
    )


def run_event(
    state: str,
    run_id: str,
    job: tuple[str, str],
    at: datetime,
    *,
    inputs: list[InputDataset] | None = None,
    outputs: list[OutputDataset] | None = None,
    parent: tuple[str, str, str] | None = None,
    error: str | None = None,
    extra_facets: dict[str, Any] | None = None,
) -> bytes:
    facets: dict[str, Any] = dict(extra_facets or {})
    if parent is not None:
        p_run, p_ns, p_job = parent
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=p_run), job=parent_run.Job(namespace=p_ns, name=p_job)
        )
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python"
        )
    event = RunEvent(
        eventType=RunState[state],
        eventTime=at.isoformat(),
        producer=PRODUCER,
        run=Run(runId=run_id, facets=facets),
        job=Job(namespace=job[0], name=job[1]),
        inputs=inputs or [],
        outputs=outputs or [],
    )
    return str(Serde.to_json(event)).encode()


def dataset_in(ns: str, name: str, *fields: tuple[str, str]) -> InputDataset:
    return InputDataset(
        namespace=ns, name=name, facets={"schema": schema(*fields)} if fields else {}
    )


def dataset_out(
    ns: str,
    name: str,
    *fields: tuple[str, str],
    rows: int | None = None,
    columns: dict[str, list[tuple[str, str, str]]] | None = None,
) -> OutputDataset:
    facets: dict[str, Any] = {}
    if fields:
        facets["schema"] = schema(*fields)
    if columns:
        facets["columnLineage"] = column_lineage(columns)
    output_facets: dict[str, Any] = {}
    if rows is not None:
        output_facets["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)
        )
    return OutputDataset(namespace=ns, name=name, facets=facets, outputFacets=output_facets)


def dataset_event(ns: str, name: str, at: datetime, *fields: tuple[str, str]) -> bytes:
    event = DatasetEvent(
        eventTime=at.isoformat(),
        producer=PRODUCER,
        dataset=StaticDataset(namespace=ns, name=name, facets={"schema": schema(*fields)}),
    )
    return str(Serde.to_json(event)).encode()


def job_event(
    job: tuple[str, str],
    at: datetime,
    inputs: list[tuple[str, str]],
    outputs: list[tuple[str, str]],
) -> bytes:
    event = JobEvent(
        eventTime=at.isoformat(),
        producer=PRODUCER,
        job=Job(namespace=job[0], name=job[1]),
        inputs=[InputDataset(namespace=ns, name=n) for ns, n in inputs],
        outputs=[OutputDataset(namespace=ns, name=n) for ns, n in outputs],
    )
    return str(Serde.to_json(event)).encode()


def new_run_id() -> str:
    return str(uuid.uuid4())


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
