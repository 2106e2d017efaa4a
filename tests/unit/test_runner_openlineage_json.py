"""The stage and run events, written without openlineage-python (a stage must not import
it), are the events openlineage-python writes: each one is built here again with the
official client's classes and `Serde.to_json`, and the two must be equal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
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

from consumers.lineage.validate import ValidEvent, validate
from lineagehub.api import StageName
from lineagehub.telemetry.lineage import run_event
from pipeline_runner import __version__
from pipeline_runner.lineage import planned_datasets, stage_event, to_json
from pipeline_runner.result import QualityOutcome, StageResult
from tests.unit.test_runner_stages import make_config

P = "https://github.com/lineage-hub/lineage-hub"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RUN_ID = "019ac0f0-0000-7000-8000-000000000001"
TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"
LINEAGE = {
    "fields": {
        "total": {
            "inputFields": [
                {
                    "namespace": "file",
                    "name": "/d/orders.csv",
                    "field": "amount",
                    "transformations": [
                        {"type": "DIRECT", "subtype": "TRANSFORMATION", "description": "x*2"}
                    ],
                }
            ]
        }
    },
    "dataset": [
        {
            "namespace": "file",
            "name": "/d/orders.csv",
            "field": "status",
            "transformations": [{"type": "INDIRECT", "subtype": "FILTER", "masking": False}],
        }
    ],
}


def _trace() -> dict[str, Any]:
    from openlineage.client.generated.base import RunFacet

    facet = RunFacet(producer=P)
    data = Serde.to_dict(facet)
    data["_schemaURL"] = f"{P}/blob/main/docs/facets/TraceRunFacet.json"
    data.update(traceId="ab" * 16, traceparent=TRACEPARENT)
    return data


def _official_stage_event(
    event_type: RunState, cfg: Any, result: StageResult | None, error: str | None, stack: str | None
) -> dict[str, Any]:
    """The stage event as openlineage-python's classes make it."""
    parent = cfg.parent
    run_facets: dict[str, Any] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=pl.__version__,
            name="polars",
            openlineageAdapterVersion=__version__,
            producer=P,
        ),
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent.run_id),
            job=parent_run.Job(namespace=parent.namespace, name=parent.job),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=parent.run_id),
                job=parent_run.RootJob(namespace=parent.namespace, name=parent.job),
            ),
            producer=P,
        ),
    }
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", stackTrace=stack, producer=P
        )
    planned_in, planned_out = planned_datasets(cfg)
    inputs = result.inputs if result is not None and result.inputs else planned_in
    outputs = result.outputs if result is not None and result.outputs else planned_out

    def schema(fields: list[tuple[str, str]]) -> schema_dataset.SchemaDatasetFacet:
        return schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name=n, type=t, ordinal_position=i)
                for i, (n, t) in enumerate(fields, start=1)
            ],
            producer=P,
        )

    def ref(r: dict[str, Any]) -> column_lineage_dataset.InputField:
        return column_lineage_dataset.InputField(
            namespace=r["namespace"],
            name=r["name"],
            field=r["field"],
            transformations=[
                column_lineage_dataset.Transformation(
                    type=t["type"],
                    subtype=t.get("subtype"),
                    description=t.get("description"),
                    masking=t.get("masking"),
                )
                for t in r.get("transformations", [])
            ],
        )

    ins = []
    for i in inputs:
        facets: dict[str, Any] = {"schema": schema(i.schema)} if i.schema else {}
        input_facets: dict[str, Any] = {}
        if i.null_counts is not None:
            metrics = data_quality_metrics_input_dataset
            input_facets["dataQualityMetrics"] = metrics.DataQualityMetricsInputDatasetFacet(
                columnMetrics={
                    c: metrics.ColumnMetrics(nullCount=n) for c, n in i.null_counts.items()
                },
                rowCount=i.row_count,
                bytes=i.size,
                fileCount=1,
                producer=P,
            )
        if result is not None and result.stage is StageName.TRANSFORM and result.quality:
            dq = data_quality_assertions_dataset
            input_facets["dataQualityAssertions"] = dq.DataQualityAssertionsDatasetFacet(
                assertions=[
                    dq.Assertion(
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
                producer=P,
            )
        ins.append(
            InputDataset(
                namespace=i.namespace, name=i.name, facets=facets, inputFacets=input_facets
            )
        )
    outs = []
    for o in outputs:
        facets = {"schema": schema(o.schema)} if o.schema else {}
        if o.column_lineage is not None:
            facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
                fields={
                    k: column_lineage_dataset.Fields(inputFields=[ref(r) for r in f["inputFields"]])
                    for k, f in o.column_lineage["fields"].items()
                },
                dataset=[ref(r) for r in o.column_lineage.get("dataset", [])],
                producer=P,
            )
        output_facets: dict[str, Any] = {}
        if o.row_count is not None:
            stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
            output_facets["outputStatistics"] = stats(
                rowCount=o.row_count, size=o.size, fileCount=1, producer=P
            )
        outs.append(
            OutputDataset(
                namespace=o.namespace, name=o.name, facets=facets, outputFacets=output_facets
            )
        )
    event = RunEvent(
        eventType=event_type,
        eventTime=T0.isoformat(),
        producer=P,
        run=Run(runId=cfg.run_id, facets=run_facets),
        job=Job(
            namespace=cfg.openlineage_namespace,
            name=cfg.openlineage_job,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="LINEAGE_HUB", jobType="STAGE", producer=P
                )
            },
        ),
        inputs=ins,
        outputs=outs,
    )
    data: dict[str, Any] = json.loads(Serde.to_json(event))
    data["run"]["facets"]["lineagehub_trace"] = _trace()
    return data


def _result() -> StageResult:
    return StageResult(
        stage=StageName.TRANSFORM,
        quality=[
            QualityOutcome("id_unique", "unique", "id", "fail", False, 2, "2 row(s)", ["1"]),
            QualityOutcome("amount_set", "not_null", "amount", "warn", True, 0, "ok", []),
        ],
    )


@pytest.mark.parametrize(
    ("event_type", "rich", "error", "stack"),
    [
        (RunState.START, False, None, None),
        (RunState.COMPLETE, True, None, None),
        (RunState.FAIL, True, "2 quality check(s) failed", None),
        (RunState.FAIL, False, "boom", "Traceback (most recent call last):\n  ..."),
    ],
)
def test_stage_events_are_the_ones_openlineage_python_writes(
    tmp_path: Any, event_type: RunState, rich: bool, error: str | None, stack: str | None
) -> None:
    cfg = make_config(tmp_path, StageName.TRANSFORM)
    result = None
    if rich:
        result = _result()
        result.inputs, result.outputs = planned_datasets(cfg)
        src, out = result.inputs[0], result.outputs[0]
        src.schema, src.row_count, src.size = [("id", "Int64"), ("amount", "Float64")], 9, 120
        src.null_counts = {"id": 0, "amount": 3}
        out.schema, out.row_count, out.size = [("id", "Int64"), ("total", "Float64")], 7, 99
        out.column_lineage = LINEAGE
    ours = to_json(stage_event(event_type.value, cfg, T0, result=result, error=error, stack=stack))
    assert json.loads(ours) == _official_stage_event(event_type, cfg, result, error, stack)
    assert isinstance(validate(ours), ValidEvent), validate(ours)


@pytest.mark.parametrize("error", [None, "load failed"])
def test_run_events_are_the_ones_openlineage_python_writes(error: str | None) -> None:
    ours = run_event(
        "FAIL" if error else "COMPLETE",
        run_id=RUN_ID,
        namespace="tests",
        job="orders",
        event_time=T0,
        inputs=[("file", "/d/orders.csv")],
        outputs=[("clickhouse://ch:9000", "db.orders")],
        error=error,
        traceparent=TRACEPARENT,
    )
    run_facets: dict[str, Any] = {}
    if error:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", producer=P
        )
    official = RunEvent(
        eventType=RunState.FAIL if error else RunState.COMPLETE,
        eventTime=T0.isoformat(),
        producer=P,
        run=Run(runId=RUN_ID, facets=run_facets),
        job=Job(
            namespace="tests",
            name="orders",
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH",
                    integration="LINEAGE_HUB",
                    jobType="PIPELINE",
                    producer=P,
                )
            },
        ),
        inputs=[InputDataset(namespace="file", name="/d/orders.csv")],
        outputs=[OutputDataset(namespace="clickhouse://ch:9000", name="db.orders")],
    )
    expected = json.loads(Serde.to_json(official))
    expected["run"]["facets"]["lineagehub_trace"] = _trace()
    assert json.loads(ours) == expected
    assert isinstance(validate(ours), ValidEvent), validate(ours)


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="RUNNING"):
        run_event("DONE", run_id=RUN_ID, namespace="n", job="j", event_time=T0)
