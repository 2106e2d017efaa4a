"""OpenLineage events of one stage run: START, then COMPLETE or FAIL.

Each stage is its own OpenLineage run (`StageConfig.run_id`) of the job
`<pipeline job>.<stage>`, a child of the PipelineRun's run through the `parent` run
facet (which is also the root). Datasets are named with `lineagehub.datasets.dataset_of`;
the workspace files between stages are `file` datasets, so Marquez draws
source → extract → transform → load → sink as one graph.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import datetime
from typing import Any

import polars as pl
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    InputDatasetFacet,
    JobFacet,
    OutputDatasetFacet,
    RunFacet,
    column_lineage_dataset,
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

from lineagehub.api import StageConfig, StageName
from lineagehub.datasets import dataset_of, redact_text
from lineagehub.telemetry.lineage import INTEGRATION, PRODUCER, trace_facet
from pipeline_runner import __version__
from pipeline_runner.result import DatasetInfo, StageResult

JOB_TYPE = "STAGE"


def workspace_uri(path: str) -> str:
    return f"file://{path}"


#: Set by a runner that cannot mount (the local stack's process kubelet): JSON
#: {host folder: path in the container}. Absent in a real pod.
CONTAINER_PATHS_ENV = "LINEAGEHUB_CONTAINER_PATHS"


@functools.cache
def _container_paths() -> tuple[tuple[str, str], ...]:
    try:
        mapping = json.loads(os.environ.get(CONTAINER_PATHS_ENV) or "{}")
    except ValueError:
        return ()
    if not isinstance(mapping, dict):
        return ()
    pairs = [(h, c) for h, c in mapping.items() if isinstance(h, str) and isinstance(c, str)]
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))  # the deepest folder first


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a dataset as the pod sees it: a `file://` path that a
    process runner reached through a host folder is named by its container path, so
    the stages' datasets are the ones the PipelineRun names."""
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        for host, mount in _container_paths():
            if path == host or path.startswith(host.rstrip("/") + "/"):
                uri = "file://" + mount.rstrip("/") + path[len(host.rstrip("/")) :]
                break
    return dataset_of(uri)


def _info(uri: str) -> DatasetInfo:
    namespace, name = dataset_name(uri)
    return DatasetInfo(namespace=namespace, name=name, uri=uri)


#: The namespace of the intermediate datasets between stages.
WORKSPACE_NAMESPACE = "lineage-hub-workspace"


def _intermediate(cfg: StageConfig, stage: StageName) -> DatasetInfo:
    """A stage's intermediate file, named by the pipeline, not by its path: every run's
    workspace has the same paths (`/workspace/extract.parquet`), so a path would join
    the graphs of unrelated pipelines into one."""
    job = cfg.parent.job if cfg.parent is not None else cfg.openlineage_job.rsplit(".", 1)[0]
    return DatasetInfo(
        namespace=WORKSPACE_NAMESPACE,
        name=f"{cfg.openlineage_namespace}/{job}/{stage.value}",
        uri=workspace_uri(cfg.intermediate_path(stage)),
    )


def planned_datasets(cfg: StageConfig) -> tuple[list[DatasetInfo], list[DatasetInfo]]:
    """(inputs, outputs) of a stage, named before anything is read."""
    extracted = _intermediate(cfg, StageName.EXTRACT)
    transformed = _intermediate(cfg, StageName.TRANSFORM)
    if cfg.stage is StageName.EXTRACT:
        return [_info(cfg.source.uri)], [extracted]
    if cfg.stage is StageName.TRANSFORM:
        return [extracted], [transformed]
    return [transformed], [_info(cfg.sink.uri)]


def schema_fields(schema: pl.Schema) -> list[tuple[str, str]]:
    return [(name, str(dtype)) for name, dtype in schema.items()]


def _schema_facet(fields: list[tuple[str, str]]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name=n, type=t, ordinal_position=i)
            for i, (n, t) in enumerate(fields, start=1)
        ],
        producer=PRODUCER,
    )


def _column_lineage_facet(data: dict[str, Any]) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    def field(ref: dict[str, Any]) -> column_lineage_dataset.InputField:
        return column_lineage_dataset.InputField(
            namespace=ref["namespace"],
            name=ref["name"],
            field=ref["field"],
            transformations=[
                column_lineage_dataset.Transformation(
                    type=t["type"],
                    subtype=t.get("subtype"),
                    description=t.get("description"),
                    masking=t.get("masking"),
                )
                for t in ref.get("transformations", [])
            ],
        )

    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            out: column_lineage_dataset.Fields(inputFields=[field(r) for r in f["inputFields"]])
            for out, f in data["fields"].items()
        },
        dataset=[field(r) for r in data.get("dataset", [])],
        producer=PRODUCER,
    )


def _input(info: DatasetInfo, result: StageResult | None) -> InputDataset:
    facets: dict[str, DatasetFacet] = {}
    input_facets: dict[str, InputDatasetFacet] = {}
    if info.schema:
        facets["schema"] = _schema_facet(info.schema)
    if info.null_counts is not None:
        input_facets["dataQualityMetrics"] = (
            data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
                columnMetrics={
                    col: data_quality_metrics_input_dataset.ColumnMetrics(nullCount=nulls)
                    for col, nulls in info.null_counts.items()
                },
                rowCount=info.row_count,
                bytes=info.size,
                fileCount=1,
                producer=PRODUCER,
            )
        )
    if result is not None and result.stage is StageName.TRANSFORM and result.quality:
        input_facets["dataQualityAssertions"] = (
            data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                assertions=[
                    data_quality_assertions_dataset.Assertion(
                        assertion=q.type,
                        success=q.success,
                        column=q.column,
                        severity=q.severity,
                        name=q.name,
                        description=f"checked on the transformed rows: {q.message}",
                        actual=str(q.failed_rows),
                        expected="0",
                    )
                    for q in result.quality
                ],
                producer=PRODUCER,
            )
        )
    return InputDataset(
        namespace=info.namespace, name=info.name, facets=facets, inputFacets=input_facets
    )


def _output(info: DatasetInfo) -> OutputDataset:
    facets: dict[str, DatasetFacet] = {}
    output_facets: dict[str, OutputDatasetFacet] = {}
    if info.schema:
        facets["schema"] = _schema_facet(info.schema)
    if info.column_lineage is not None:
        facets["columnLineage"] = _column_lineage_facet(info.column_lineage)
    if info.row_count is not None:
        output_facets["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=info.row_count, size=info.size, fileCount=1, producer=PRODUCER
            )
        )
    return OutputDataset(
        namespace=info.namespace, name=info.name, facets=facets, outputFacets=output_facets
    )


def stage_event(
    event_type: RunState,
    cfg: StageConfig,
    event_time: datetime,
    *,
    result: StageResult | None = None,
    error: str | None = None,
    stack: str | None = None,
) -> RunEvent:
    """One RunEvent of the stage run `cfg.run_id`; the error and its stack trace are shown
    without the credentials of any URI they quote."""
    run_facets: dict[str, RunFacet] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=pl.__version__,
            name="polars",
            openlineageAdapterVersion=__version__,
            producer=PRODUCER,
        )
    }
    if cfg.parent is not None:
        p = cfg.parent
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=p.run_id),
            job=parent_run.Job(namespace=p.namespace, name=p.job),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=p.run_id),
                job=parent_run.RootJob(namespace=p.namespace, name=p.job),
            ),
            producer=PRODUCER,
        )
    run_facets.update(trace_facet(cfg.traceparent))
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=redact_text(error),
            programmingLanguage="python",
            stackTrace=None if stack is None else redact_text(stack),
            producer=PRODUCER,
        )
    job_facets: dict[str, JobFacet] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH",
            integration=INTEGRATION,
            jobType=JOB_TYPE,
            producer=PRODUCER,
        )
    }
    planned_in, planned_out = planned_datasets(cfg)
    inputs = (result.inputs if result is not None and result.inputs else None) or planned_in
    outputs = (result.outputs if result is not None and result.outputs else None) or planned_out
    return RunEvent(
        eventType=event_type,
        eventTime=event_time.isoformat(),
        producer=PRODUCER,
        run=Run(runId=cfg.run_id, facets=run_facets),
        job=Job(namespace=cfg.openlineage_namespace, name=cfg.openlineage_job, facets=job_facets),
        inputs=[_input(i, result) for i in inputs],
        outputs=[_output(o) for o in outputs],
    )


def to_json(event: RunEvent) -> bytes:
    return str(Serde.to_json(event)).encode()
