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
from typing import TYPE_CHECKING, Any

from lineagehub.api.enums import StageName
from lineagehub.datasets import dataset_of, redact_text
from lineagehub.telemetry import openlineage_json as ol
from lineagehub.telemetry.lineage import INTEGRATION, trace_facet
from pipeline_runner import __version__
from pipeline_runner.result import DatasetInfo, StageResult

if TYPE_CHECKING:
    import polars as pl

    from lineagehub.api import StageConfig

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


def _schema_facet(fields: list[tuple[str, str]]) -> ol.Json:
    return ol.facet(
        "SchemaDatasetFacet",
        {
            "fields": [
                {"name": n, "type": t, "ordinal_position": i, "fields": []}
                for i, (n, t) in enumerate(fields, start=1)
            ]
        },
    )


def _column_lineage_facet(data: dict[str, Any]) -> ol.Json:
    def field(ref: dict[str, Any]) -> ol.Json:
        return {
            "namespace": ref["namespace"],
            "name": ref["name"],
            "field": ref["field"],
            "transformations": [
                {
                    "type": t["type"],
                    "subtype": t.get("subtype"),
                    "description": t.get("description"),
                    "masking": t.get("masking"),
                }
                for t in ref.get("transformations", [])
            ],
        }

    return ol.facet(
        "ColumnLineageDatasetFacet",
        {
            "fields": {
                out: {"inputFields": [field(r) for r in f["inputFields"]]}
                for out, f in data["fields"].items()
            },
            "dataset": [field(r) for r in data.get("dataset", [])],
        },
    )


def _input(info: DatasetInfo, result: StageResult | None) -> ol.Json:
    facets: ol.Json = {}
    input_facets: ol.Json = {}
    if info.schema:
        facets["schema"] = _schema_facet(info.schema)
    if info.null_counts is not None:
        input_facets["dataQualityMetrics"] = ol.facet(
            "DataQualityMetricsInputDatasetFacet",
            {
                "columnMetrics": {
                    col: {"nullCount": nulls, "quantiles": {}}
                    for col, nulls in info.null_counts.items()
                },
                "rowCount": info.row_count,
                "bytes": info.size,
                "fileCount": 1,
            },
        )
    if result is not None and result.stage is StageName.TRANSFORM and result.quality:
        input_facets["dataQualityAssertions"] = ol.facet(
            "DataQualityAssertionsDatasetFacet",
            {
                "assertions": [
                    {
                        "assertion": q.type,
                        "success": q.success,
                        "column": q.column,
                        "severity": q.severity,
                        "name": q.name,
                        "description": f"checked on the transformed rows: {q.message}",
                        "actual": str(q.failed_rows),
                        "expected": "0",
                        "params": {},
                    }
                    for q in result.quality
                ]
            },
        )
    return {
        "namespace": info.namespace,
        "name": info.name,
        "facets": facets,
        "inputFacets": input_facets,
    }


def _output(info: DatasetInfo) -> ol.Json:
    facets: ol.Json = {}
    output_facets: ol.Json = {}
    if info.schema:
        facets["schema"] = _schema_facet(info.schema)
    if info.column_lineage is not None:
        facets["columnLineage"] = _column_lineage_facet(info.column_lineage)
    if info.row_count is not None:
        output_facets["outputStatistics"] = ol.facet(
            "OutputStatisticsOutputDatasetFacet",
            {"rowCount": info.row_count, "size": info.size, "fileCount": 1},
        )
    return {
        "namespace": info.namespace,
        "name": info.name,
        "facets": facets,
        "outputFacets": output_facets,
    }


def stage_event(
    event_type: str,
    cfg: StageConfig,
    event_time: datetime,
    *,
    result: StageResult | None = None,
    error: str | None = None,
    stack: str | None = None,
) -> ol.Json:
    """One RunEvent (START, COMPLETE or FAIL) of the stage run `cfg.run_id`; the error
    and its stack trace are shown without the credentials of any URI they quote."""
    run_facets: ol.Json = {
        "processing_engine": ol.facet(
            "ProcessingEngineRunFacet",
            {
                "version": _polars_version(),
                "name": "polars",
                "openlineageAdapterVersion": __version__,
            },
        )
    }
    if cfg.parent is not None:
        p = cfg.parent
        run = {"runId": p.run_id, "facets": {}}
        job = {"namespace": p.namespace, "name": p.job, "facets": {}}
        run_facets["parent"] = ol.facet(
            "ParentRunFacet", {"run": run, "job": job, "root": {"run": run, "job": job}}
        )
    run_facets.update(trace_facet(cfg.traceparent))
    if error is not None:
        run_facets["errorMessage"] = ol.error_message(
            redact_text(error), None if stack is None else redact_text(stack)
        )
    planned_in, planned_out = planned_datasets(cfg)
    inputs = (result.inputs if result is not None and result.inputs else None) or planned_in
    outputs = (result.outputs if result is not None and result.outputs else None) or planned_out
    return ol.run_event(
        event_type,
        event_time=event_time.isoformat(),
        run_id=cfg.run_id,
        run_facets=run_facets,
        job_namespace=cfg.openlineage_namespace,
        job_name=cfg.openlineage_job,
        job_facets={"jobType": ol.job_type(JOB_TYPE, INTEGRATION)},
        inputs=[_input(i, result) for i in inputs],
        outputs=[_output(o) for o in outputs],
    )


def _polars_version() -> str:
    import polars as pl  # already loaded by the stage's work

    return pl.__version__


def to_json(event: ol.Json) -> bytes:
    return ol.to_json(event)
