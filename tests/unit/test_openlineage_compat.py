"""What Marquez stores passes both doors; what Marquez refuses is refused with its path.

Every accepted event goes through the gateway's `check` and the lineage consumer's
`validate`. The Marquez references are MarquezProject/marquez 0.50/0.51:
`api/src/main/java/marquez/service/models/LineageEvent.java` (the model and its
@NotNull fields), `common/models/FlexibleDateTimeDeserializer.java` (event times),
`service/models/EventTypeResolver.java` (the kind comes from schemaURL),
`db/OpenLineageDao.java` (NamespaceName/DatasetName/JobName checks) and the events
of `api/src/test/resources/open_lineage/` and `OpenLineageIntegrationTest.java`.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attr
import pytest
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
    DatasetFacet,
    JobFacet,
    RunFacet,
    column_lineage_dataset,
    data_quality_metrics_input_dataset,
    datasource_dataset,
    documentation_dataset,
    documentation_job,
    error_message_run,
    job_type_job,
    lifecycle_state_change_dataset,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    source_code_location_job,
    sql_job,
    symlinks_dataset,
)
from openlineage.client.serde import Serde
from openlineage.client.uuid import generate_new_uuid

from consumers.dlq import Rejection
from consumers.lineage.validate import ValidEvent, validate
from consumers.otel.decode import DecodeError
from consumers.warehouse.decode import decode_lineage
from gateway.lineage import Checked, Invalid, check
from lineagehub.openlineage_schema import EventKind, event_kind

MAX_EVENT_BYTES = 1_000_000  # the gateway's default
SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/"
PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/client/python"


def accepted(event: dict[str, Any]) -> tuple[Checked, ValidEvent]:
    """`event` passes the gateway and the consumer, as the same kind and key."""
    checked = check(copy.deepcopy(event), MAX_EVENT_BYTES)
    assert isinstance(checked, Checked), checked
    verdict = validate(json.dumps(event).encode())
    assert isinstance(verdict, ValidEvent), verdict
    assert (verdict.kind, verdict.key) == (checked.kind, checked.key)
    # The gateway forwards the event unchanged (only re-encoded).
    assert json.loads(checked.value) == event
    # The lineage warehouse stores it too, as the same kind (only an eventTime outside
    # what ClickHouse's DateTime64 holds, 1900..2262, is beyond it: dead-lettered).
    try:
        rows = decode_lineage(checked.value)
    except DecodeError as exc:
        assert "1900..2262" in exc.detail, exc
    else:
        (stored,) = rows["lineage_events"]
        assert stored["Kind"] == {"RunEvent": "run", "DatasetEvent": "dataset"}.get(
            checked.kind.value, "job"
        )
    return checked, verdict


def refused(event: dict[str, Any], path: str) -> str:
    """Both doors refuse `event`, naming `path`; returns the message for that path."""
    checked = check(copy.deepcopy(event), MAX_EVENT_BYTES)
    assert isinstance(checked, Invalid) and checked.status == 400, checked
    messages = {e.path: e.message for e in checked.errors}
    assert path in messages, checked.errors
    verdict = validate(json.dumps(event).encode())
    assert isinstance(verdict, Rejection) and verdict.reason == "schema", verdict
    assert f"{path}: " in verdict.detail
    return messages[path]


def serialized(event: Any) -> dict[str, Any]:
    """What the client's transports send: `Serde.to_json`."""
    parsed: dict[str, Any] = json.loads(Serde.to_json(event))
    return parsed


# ---------------------------------------------------------------- openlineage-python


@attr.define
class AcmeRunFacet(RunFacet):
    """A user's own facet, as the client's docs show: a subclass with extra fields."""

    pipeline: str
    attempt: int
    tags: list[str] = attr.field(factory=list)
    settings: dict[str, Any] = attr.field(factory=dict)


@attr.define
class AcmeDatasetFacet(DatasetFacet):
    owner_team: str
    pii: bool = False


@attr.define
class AcmeJobFacet(JobFacet):
    runbook: str


def test_client_run_event_with_a_naive_datetime() -> None:
    # openlineage-python's own examples use datetime.now().isoformat(): no offset.
    event = serialized(
        RunEvent(
            eventType=RunState.START,
            eventTime=datetime.now().isoformat(),
            run=Run(runId=str(generate_new_uuid())),
            job=Job(namespace="acme", name="nightly.load"),
            producer=PRODUCER,
        )
    )
    assert "+" not in event["eventTime"] and not event["eventTime"].endswith("Z")
    checked, verdict = accepted(event)
    assert checked.kind is EventKind.RUN and checked.event_type == "START"
    assert verdict.run_id == event["run"]["runId"]


@pytest.mark.parametrize(
    "when",
    [
        datetime(2025, 1, 2, 3, 4, 5),
        datetime(2025, 1, 2, 3, 4, 5, 123456),
        datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2025, 1, 2, 3, 4, 5, 1, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    ],
)
@pytest.mark.parametrize("timespec", ["auto", "seconds", "milliseconds", "minutes"])
def test_every_isoformat_the_client_users_write_is_accepted(when: datetime, timespec: str) -> None:
    event = serialized(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=when.isoformat(timespec=timespec),
            run=Run(runId=str(uuid.uuid4())),
            job=Job(namespace="acme", name="job"),
            producer=PRODUCER,
        )
    )
    accepted(event)


def test_client_run_event_without_optional_fields() -> None:
    # No eventType, no inputs/outputs facets, no job facets: all optional in Marquez.
    event = serialized(
        RunEvent(
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=str(uuid.uuid4())),
            job=Job(namespace="acme", name="adhoc"),
            inputs=[InputDataset(namespace="s3://bucket", name="raw/orders")],
            outputs=[OutputDataset(namespace="s3://bucket", name="clean/orders")],
        )
    )
    assert "eventType" not in event
    assert event["producer"]  # the client fills in its own
    checked, verdict = accepted(event)
    assert checked.event_type is None and verdict.event_type == ""


def test_client_custom_facets_pass_untouched() -> None:
    run_facets: dict[str, RunFacet] = {
        "acme": AcmeRunFacet(
            pipeline="orders",
            attempt=3,
            tags=["a", "b"],
            settings={"nested": {"deep": [1, 2.5, None, {"x": "y"}]}},
        ),
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version="3.5.1", name="spark", openlineageAdapterVersion="1.24.0"
        ),
        "errorMessage": error_message_run.ErrorMessageRunFacet(
            message="boom", programmingLanguage="python", stackTrace="Traceback ..."
        ),
    }
    event = serialized(
        RunEvent(
            eventType=RunState.FAIL,
            eventTime=datetime.now().isoformat(),
            run=Run(runId=str(uuid.uuid4()), facets=run_facets),
            job=Job(
                namespace="acme",
                name="orders.load",
                facets={"acme": AcmeJobFacet(runbook="https://wiki/acme")},
            ),
            inputs=[
                InputDataset(
                    namespace="postgres://db.acme:5432",
                    name="shop.public.orders",
                    facets={"acme": AcmeDatasetFacet(owner_team="data")},
                    inputFacets={
                        "dataQualityMetrics": (
                            data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
                                rowCount=10, bytes=2048, columnMetrics={}
                            )
                        )
                    },
                )
            ],
            outputs=[
                OutputDataset(
                    namespace="s3://acme-lake",
                    name="orders",
                    outputFacets={
                        "outputStatistics": (
                            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                                rowCount=10, size=4096
                            )
                        )
                    },
                )
            ],
            producer=PRODUCER,
        )
    )
    # (Serde drops the None from the list: what is sent is what must pass.)
    assert event["run"]["facets"]["acme"]["settings"]["nested"]["deep"] == [1, 2.5, {"x": "y"}]
    checked, _ = accepted(event)
    assert json.loads(checked.value)["run"]["facets"]["acme"]["attempt"] == 3


def test_client_dataset_event_is_accepted_as_a_dataset_event() -> None:
    facets: dict[str, DatasetFacet] = {
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name="id", type="BIGINT"),
                schema_dataset.SchemaDatasetFacetFields(
                    name="address",
                    type="STRUCT",
                    fields=[schema_dataset.SchemaDatasetFacetFields(name="zip", type="STRING")],
                ),
            ]
        ),
        "symlinks": symlinks_dataset.SymlinksDatasetFacet(
            identifiers=[
                symlinks_dataset.Identifier(
                    namespace="hive://metastore:9083", name="shop.orders", type="TABLE"
                )
            ]
        ),
        "documentation": documentation_dataset.DocumentationDatasetFacet(description="Orders"),
        "dataSource": datasource_dataset.DatasourceDatasetFacet(
            name="s3://acme-lake", uri="s3://acme-lake"
        ),
        "lifecycleStateChange": lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.CREATE
        ),
        "acme": AcmeDatasetFacet(owner_team="data", pii=True),
    }
    event = serialized(
        DatasetEvent(
            eventTime=datetime.now().isoformat(),
            dataset=StaticDataset(namespace="s3://acme-lake", name="orders", facets=facets),
            producer=PRODUCER,
        )
    )
    assert event["schemaURL"].endswith("/DatasetEvent")
    checked, verdict = accepted(event)
    assert checked.kind is EventKind.DATASET and checked.run_id is None
    assert verdict.key == "dataset:s3://acme-lake/orders" and verdict.run_id == ""


def test_client_job_event_is_accepted_as_a_job_event() -> None:
    event = serialized(
        JobEvent(
            eventTime=datetime.now(UTC).isoformat(),
            job=Job(
                namespace="acme",
                name="orders.daily",
                facets={
                    "sql": sql_job.SQLJobFacet(query="INSERT INTO b SELECT * FROM a"),
                    "jobType": job_type_job.JobTypeJobFacet(
                        processingType="BATCH", integration="DBT", jobType="MODEL"
                    ),
                    "documentation": documentation_job.DocumentationJobFacet(
                        description="daily orders"
                    ),
                    "sourceCodeLocation": source_code_location_job.SourceCodeLocationJobFacet(
                        type="git", url="https://github.com/acme/etl/blob/main/orders.sql"
                    ),
                },
            ),
            inputs=[InputDataset(namespace="bigquery", name="acme.raw.orders")],
            outputs=[OutputDataset(namespace="bigquery", name="acme.mart.orders")],
            producer=PRODUCER,
        )
    )
    checked, verdict = accepted(event)
    assert checked.kind is EventKind.JOB
    assert verdict.key == "job:acme/orders.daily"


def test_client_parent_facet_with_root_and_a_non_uuid_run_id() -> None:
    # Marquez takes any runId (OpenLineageDao.runToUuid hashes a non-UUID one).
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=str(uuid.uuid4())),
        job=parent_run.Job(namespace="airflow", name="orders_dag"),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=str(uuid.uuid4())),
            job=parent_run.RootJob(namespace="airflow", name="orders_dag"),
        ),
    )
    nominal = nominal_time_run.NominalTimeRunFacet(
        nominalStartTime="2025-01-02T00:00:00", nominalEndTime=None
    )
    event = serialized(
        RunEvent(
            eventType=RunState.RUNNING,
            eventTime=datetime.now().isoformat(),
            run=Run(runId=str(uuid.uuid4()), facets={"parent": parent, "nominalTime": nominal}),
            job=Job(namespace="airflow", name="orders_dag.extract"),
            producer=PRODUCER,
        )
    )
    event["run"]["runId"] = "scheduled__2025-01-02T00:00:00+00:00"
    _, verdict = accepted(event)
    assert verdict.run_id == "scheduled__2025-01-02t00:00:00+00:00"


def test_a_large_client_event_with_many_fields_and_column_lineage() -> None:
    n = 1500
    fields = [
        schema_dataset.SchemaDatasetFacetFields(name=f"col_{i}", type="DOUBLE", description="m")
        for i in range(n)
    ]
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            f"col_{i}": column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace="postgres://db:5432",
                        name="shop.public.orders",
                        field=f"col_{i}",
                        transformations=[
                            column_lineage_dataset.Transformation(
                                type="DIRECT", subtype="IDENTITY", masking=False
                            )
                        ],
                    )
                ],
                transformationType="IDENTITY",
            )
            for i in range(n)
        }
    )
    event = serialized(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=datetime.now().isoformat(),
            run=Run(runId=str(uuid.uuid4())),
            job=Job(namespace="acme", name="wide.copy"),
            inputs=[
                InputDataset(
                    namespace="postgres://db:5432",
                    name="shop.public.orders",
                    facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
                )
            ],
            outputs=[
                OutputDataset(
                    namespace="s3://acme-lake",
                    name="wide",
                    facets={
                        "schema": schema_dataset.SchemaDatasetFacet(fields=fields),
                        "columnLineage": lineage,
                    },
                )
            ],
            producer=PRODUCER,
        )
    )
    size = len(json.dumps(event))
    assert 500_000 < size < MAX_EVENT_BYTES
    # Both doors take it whole (their speed is bench_gateway's business, not a test's).
    _, verdict = accepted(event)
    assert verdict.run_id == event["run"]["runId"]
    # ... and an error deep inside such an event is still found, with its path.
    broken = copy.deepcopy(event)
    broken["outputs"][0]["facets"]["schema"]["fields"][1499]["name"] = None
    refused(broken, "$.outputs[0].facets.schema.fields[1499].name")


# ---------------------------------------------------------------- Marquez's own test events


def _run_event(**extra: Any) -> dict[str, Any]:
    """api/src/test/resources/open_lineage/event_required_only.json, as written there."""
    return {
        "eventTime": "2020-12-28T19:51:01.641Z",
        "run": {"runId": "43d7db3b-8984-4cda-b237-8c6919b36670"},
        "job": {"namespace": "my-namespace", "name": "myjob"},
        "producer": "https://github.com/OpenLineage/OpenLineage/blob/v1-0-0/client",
        "schemaURL": "https://openlineage.io/spec/1-0-1/OpenLineage.json#/definitions/RunEvent",
        **extra,
    }


FACET = {
    "_producer": "https://github.com/OpenLineage/OpenLineage/blob/v1-0-0/client",
    "_schemaURL": "https://github.com/OpenLineage/OpenLineage/blob/v1-0-0/spec/OpenLineage.yml#MyCustomJobFacet",
}


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(_run_event(), id="event_required_only"),
        # event_required_no_timezone.json / event_required_nanoseconds.json
        pytest.param(_run_event(eventTime="2020-12-28T19:51:01.641499"), id="no_timezone"),
        pytest.param(_run_event(eventTime="2020-12-28T19:51:01.641499Z"), id="microseconds"),
        pytest.param(_run_event(eventTime="2020-12-28T19:51:01.641499123+10:00"), id="nanos"),
        # event_without_schema_url.json: a RunEvent needs no schemaURL in Marquez.
        pytest.param(
            {
                k: v
                for k, v in _run_event(
                    eventType="COMPLETE",
                    inputs=[{"namespace": "my-datasource-namespace", "name": "input-1"}],
                    outputs=[{"namespace": "my-datasource-namespace", "name": "output-1"}],
                ).items()
                if k != "schemaURL"
            },
            id="event_without_schema_url",
        ),
        # event_unicode.json
        pytest.param(
            _run_event(
                eventType="COMPLETE",
                job={"namespace": "my-scheduler-namespace", "name": "myjob.buggy_task🕷"},
            ),
            id="event_unicode",
        ),
        # null_nominal_end_time.json: a nominalTime facet without its end.
        pytest.param(
            _run_event(
                eventType="START",
                run={
                    "runId": "1d79ed5b-7fe9-4124-b70a-bfa01d9fba83",
                    "facets": {
                        "nominalTime": {**FACET, "nominalStartTime": "2020-12-17T03:00:00.001Z"}
                    },
                },
            ),
            id="null_nominal_end_time",
        ),
        # event_full.json / event_additional_facet.json: typed and additional facets.
        pytest.param(
            _run_event(
                eventType="START",
                run={
                    "runId": "5355b91b-32b4-4477-b660-3adadee198b2",
                    "facets": {
                        "nominalTime": {
                            **FACET,
                            "nominalStartTime": "2020-12-17T03:00:00.001Z",
                            "nominalEndTime": "2020-12-17T04:00:00.001Z",
                        },
                        "parent": {
                            **FACET,
                            "run": {"runId": "3f5e83fa-3480-44ff-99c5-ff943904e5e8"},
                            "job": {"namespace": "my-scheduler-namespace", "name": "myjob.mytask"},
                        },
                        "additionalProp1": {**FACET, "additionalProp1": {}},
                    },
                },
                job={
                    "namespace": "my-scheduler-namespace",
                    "name": "myjob.mytask",
                    "facets": {
                        "documentation": {**FACET, "description": "string"},
                        "sourceCodeLocation": {**FACET, "type": "git", "url": "string"},
                        "sql": {**FACET, "additionalPropExample": {"example": True}, "query": "q"},
                        "jobType": {
                            **FACET,
                            "jobType": "QUERY",
                            "integration": "FLINK",
                            "processingType": "STREAMING",
                        },
                    },
                },
                inputs=[
                    {
                        "namespace": "my-datasource-namespace",
                        "name": "instance.schema.table",
                        "inputFacets": {
                            "dataQualityMetrics": {**FACET, "rowCount": 1000, "bytes": 1048576}
                        },
                        "facets": {
                            "documentation": {**FACET, "description": "Foo"},
                            "schema": {
                                **FACET,
                                "fields": [{"name": "column1", "type": "VARCHAR"}],
                            },
                            "dataSource": {**FACET, "name": "string", "uri": "string"},
                        },
                    }
                ],
            ),
            id="event_full",
        ),
        # The Airflow integration once sent `parentRun` (LineageEvent.RunFacet's alias).
        pytest.param(
            _run_event(
                run={
                    "runId": "ea041791-68bc-4ae1-bd89-4c8106a157e4",
                    "facets": {
                        "parentRun": {
                            **FACET,
                            "run": {"runId": "manual__2025"},
                            "job": {"namespace": "airflow", "name": "dag"},
                        }
                    },
                }
            ),
            id="parentRun_alias",
        ),
    ],
)
def test_marquez_test_events_are_accepted(event: dict[str, Any]) -> None:
    accepted(event)


def test_marquez_static_events_are_accepted_with_their_kind() -> None:
    # event_dataset_event.json: a spec version Marquez does not know, #/definitions/.
    dataset_event = {
        "eventTime": "2020-12-28T19:52:00.001+10:00",
        "dataset": {
            "namespace": "my-dataset-namespace",
            "name": "my-dataset-name",
            "facets": {
                "schema": {**FACET, "fields": [{"name": "col_a", "type": "VARCHAR"}]},
            },
        },
        "producer": "https://github.com/OpenLineage/OpenLineage/blob/v1-0-0/client",
        "schemaURL": "https://openlineage.io/spec/2-8-9/OpenLineage.json#/definitions/DatasetEvent",
    }
    # event_job_event.json: a JobEvent may carry an eventType (Marquez ignores it).
    job_event = {
        "eventType": "COMPLETE",
        "eventTime": "2020-12-28T19:52:00.001+10:00",
        "job": {"namespace": "my-scheduler-namespace", "name": "myjob"},
        "inputs": [
            {
                "namespace": "my-datasource-namespace",
                "name": "instance.schema.input-1",
                "facets": {"documentation": {**FACET, "description": "input documentation"}},
            }
        ],
        "outputs": [{"namespace": "my-datasource-namespace", "name": "instance.schema.output-1"}],
        "producer": "https://github.com/OpenLineage/OpenLineage/blob/v1-0-0/client",
        "schemaURL": "https://openlineage.io/spec/1-0-1/OpenLineage.json#/definitions/JobEvent",
    }
    assert accepted(dataset_event)[0].kind is EventKind.DATASET
    checked, _ = accepted(job_event)
    assert checked.kind is EventKind.JOB and checked.event_type is None


# ---------------------------------------------------------------- producers' shapes


def airflow_task_event() -> dict[str, Any]:
    """The shape apache-airflow-providers-openlineage sends for a task (its docs and
    OpenLineage's website/docs/integrations/airflow): naive-free UTC times, an
    `airflow` run facet, a parent facet for the DAG run, jobType TASK."""
    producer = "https://github.com/apache/airflow/tree/providers-openlineage/1.14.0"
    facet = {"_producer": producer}
    return {
        "eventType": "COMPLETE",
        "eventTime": "2025-01-02T03:04:05.678901+00:00",
        "producer": producer,
        "schemaURL": SPEC + "RunEvent",
        "run": {
            "runId": "01941a4d-8ff7-7d5b-9a1e-1a0b8c9d0e1f",
            "facets": {
                "airflow": {
                    **facet,
                    "_schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet",
                    "dag": {"dag_id": "orders", "schedule_interval": "@daily", "tags": "[]"},
                    "dagRun": {"run_id": "scheduled__2025-01-01T00:00:00+00:00"},
                    "task": {"task_id": "load", "operator_class": "SQLExecuteQueryOperator"},
                    "taskInstance": {"try_number": 1, "pool": "default_pool"},
                    "taskUuid": "01941a4d-8ff7-7d5b-9a1e-1a0b8c9d0e1f",
                },
                "nominalTime": {
                    **facet,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet",
                    "nominalStartTime": "2025-01-01T00:00:00.000000Z",
                    "nominalEndTime": "2025-01-02T00:00:00.000000Z",
                },
                "parent": {
                    **facet,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet",
                    "run": {"runId": "01941a4d-0000-7000-8000-000000000001"},
                    "job": {"namespace": "default", "name": "orders"},
                    "root": {
                        "run": {"runId": "01941a4d-0000-7000-8000-000000000001"},
                        "job": {"namespace": "default", "name": "orders"},
                    },
                },
                "processing_engine": {
                    **facet,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
                    "version": "2.10.4",
                    "name": "Airflow",
                    "openlineageAdapterVersion": "1.14.0",
                },
            },
        },
        "job": {
            "namespace": "default",
            "name": "orders.load",
            "facets": {
                "jobType": {
                    **facet,
                    "_schemaURL": "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                    "processingType": "BATCH",
                    "integration": "AIRFLOW",
                    "jobType": "TASK",
                },
                "sql": {
                    **facet,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet",
                    "query": "INSERT INTO mart.orders SELECT * FROM public.orders",
                    "dialect": "postgres",
                },
            },
        },
        "inputs": [{"namespace": "postgres://postgres:5432", "name": "shop.public.orders"}],
        "outputs": [{"namespace": "postgres://postgres:5432", "name": "shop.mart.orders"}],
    }


def spark_event() -> dict[str, Any]:
    """The shape of the Spark integration's events (OpenLineage integration/spark
    app/integrations/container/columnLineage*.json, with the _producer/_schemaURL the
    Java client adds): a deep logical plan, symlinks, column lineage, statistics."""
    producer = "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/integration/spark"
    facet = {"_producer": producer, "_schemaURL": SPEC + "RunFacet"}
    plan: dict[str, Any] = {"class": "LocalRelation", "num-children": 0}
    for depth in range(40):
        plan = {"class": f"Project{depth}", "num-children": 1, "child": [plan]}
    return {
        "eventType": "RUNNING",
        "eventTime": "2025-01-02T03:04:05.123Z",
        "producer": producer,
        "schemaURL": SPEC + "RunEvent",
        "run": {
            "runId": "01941a4d-8ff7-7d5b-9a1e-000000000002",
            "facets": {
                "spark.logicalPlan": {**facet, "plan": [plan]},
                "spark_properties": {**facet, "properties": {"spark.master": "local[*]"}},
                "processing_engine": {**facet, "version": "3.5.1", "name": "spark"},
                "environment-properties": {**facet, "environment-properties": {}},
            },
        },
        "job": {
            "namespace": "spark_namespace",
            "name": "orders_app.execute_insert_into_hadoop_fs_relation_command.warehouse_orders",
            "facets": {
                "jobType": {
                    **facet,
                    "processingType": "BATCH",
                    "integration": "SPARK",
                    "jobType": "SQL_JOB",
                }
            },
        },
        "inputs": [
            {
                "namespace": "file",
                "name": "/tmp/warehouse/raw_orders",
                "facets": {
                    "dataSource": {**facet, "name": "file", "uri": "file"},
                    "schema": {**facet, "fields": [{"name": "k", "type": "integer"}]},
                    "symlinks": {
                        **facet,
                        "identifiers": [
                            {
                                "namespace": "hive://metastore:9083",
                                "name": "default.raw_orders",
                                "type": "TABLE",
                            }
                        ],
                    },
                },
                "inputFacets": {},
            }
        ],
        "outputs": [
            {
                "namespace": "file",
                "name": "/tmp/warehouse/orders",
                "facets": {
                    "schema": {**facet, "fields": [{"name": "k", "type": "integer"}]},
                    "columnLineage": {
                        **facet,
                        "fields": {
                            "k": {
                                "inputFields": [
                                    {
                                        "namespace": "file",
                                        "name": "/tmp/warehouse/raw_orders",
                                        "field": "k",
                                        "transformations": [
                                            {"type": "DIRECT", "subtype": "IDENTITY"}
                                        ],
                                    }
                                ]
                            }
                        },
                        "dataset": [],
                    },
                    "lifecycleStateChange": {**facet, "lifecycleStateChange": "OVERWRITE"},
                },
                "outputFacets": {"outputStatistics": {**facet, "rowCount": 10, "size": 2048}},
            }
        ],
    }


def dbt_event() -> dict[str, Any]:
    """The dbt integration's model events (OpenLineage integration/common/tests/dbt
    */result.json): a dbt_run run facet, a parent facet, dataQualityAssertions."""
    producer = "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/integration/dbt"
    facet = {"_producer": producer, "_schemaURL": SPEC + "BaseFacet"}
    return {
        "eventType": "COMPLETE",
        "eventTime": "2025-01-02T03:04:05.123456+00:00",
        "producer": producer,
        "schemaURL": SPEC + "RunEvent",
        "run": {
            "runId": "01941a4d-8ff7-7d5b-9a1e-000000000003",
            "facets": {
                "dbt_run": {**facet, "invocation_id": "b1d24c06-5f63-40e4-a0a2-b0a8d46fb18f"},
                "dbt_version": {**facet, "version": "1.8.0"},
                "parent": {
                    **facet,
                    "run": {"runId": "01941a4d-8ff7-7d5b-9a1e-000000000004"},
                    "job": {"namespace": "dbt", "name": "dbt-run-jaffle_shop"},
                },
            },
        },
        "job": {
            "namespace": "dbt",
            "name": "jaffle.dbt_test.customers",
            "facets": {
                "sql": {**facet, "query": "select * from orders", "dialect": "postgres"},
                "jobType": {
                    **facet,
                    "processingType": "BATCH",
                    "integration": "DBT",
                    "jobType": "MODEL",
                },
            },
        },
        "inputs": [
            {
                "namespace": "postgres://localhost:5432",
                "name": "jaffle.dbt_test.orders",
                "facets": {"dataSource": {**facet, "name": "postgres://localhost:5432"}},
                "inputFacets": {
                    "dataQualityAssertions": {
                        **facet,
                        "assertions": [{"assertion": "not_null", "success": True, "column": "id"}],
                    }
                },
            }
        ],
        "outputs": [
            {"namespace": "postgres://localhost:5432", "name": "jaffle.dbt_test.customers"}
        ],
    }


def flink_event() -> dict[str, Any]:
    """The Flink integration's streaming events (OpenLineage integration/flink
    flink1/src/test/resources/events/expected_kafka_checkpoints.json): RUNNING, Kafka
    topics, a checkpoints facet, jobType STREAMING."""
    producer = "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/integration/flink"
    facet = {"_producer": producer, "_schemaURL": SPEC + "BaseFacet"}
    topic = {"namespace": "kafka://kafka-cluster-prod:9092"}
    return {
        "eventType": "RUNNING",
        "eventTime": "2025-01-02T03:04:05.123456789Z",
        "producer": producer,
        "schemaURL": SPEC + "RunEvent",
        "run": {
            "runId": "01941a4d-8ff7-7d5b-9a1e-000000000005",
            "facets": {
                "checkpoints": {
                    **facet,
                    "completed": 5,
                    "failed": 0,
                    "in-progress": 1,
                    "restored": 0,
                    "total": 6,
                },
                "flink_job": {**facet, "jobId": "a5b2c7d1"},
            },
        },
        "job": {
            "namespace": "flink_job_namespace",
            "name": "flink_examples_stateful",
            "facets": {
                "jobType": {
                    **facet,
                    "processingType": "STREAMING",
                    "integration": "FLINK",
                    "jobType": "JOB",
                }
            },
        },
        "inputs": [
            {**topic, "name": "io.openlineage.flink.kafka.input1"},
            {**topic, "name": "io.openlineage.flink.kafka.input2"},
        ],
        "outputs": [
            {
                **topic,
                "name": "io.openlineage.flink.kafka.output",
                "facets": {
                    "schema": {**facet, "fields": [{"name": "id", "type": "string"}]},
                },
            }
        ],
    }


def java_client_event() -> dict[str, Any]:
    """openlineage-java's RunEvent: ZonedDateTime with nanoseconds and an offset,
    facets with the client's _producer, empty facet maps."""
    producer = "https://github.com/OpenLineage/OpenLineage/tree/1.24.0/client/java"
    return {
        "eventType": "START",
        "eventTime": "2025-01-02T04:04:05.123456789+01:00",
        "producer": producer,
        "schemaURL": SPEC + "RunEvent",
        "run": {"runId": "01941a4d-8ff7-7d5b-9a1e-000000000006", "facets": {}},
        "job": {"namespace": "java-app", "name": "ingest", "facets": {}},
        "inputs": [{"namespace": "gs://bucket", "name": "landing", "facets": {}}],
        "outputs": [],
    }


@pytest.mark.parametrize(
    "make", [airflow_task_event, spark_event, dbt_event, flink_event, java_client_event]
)
def test_integration_shaped_events_are_accepted(make: Any) -> None:
    checked, verdict = accepted(make())
    assert checked.kind is EventKind.RUN and verdict.run_id.startswith("01941a4d")


# ---------------------------------------------------------------- what Marquez refuses


def base() -> dict[str, Any]:
    return _run_event(
        eventType="COMPLETE",
        inputs=[{"namespace": "testing_namespace_1", "name": "SOURCE_TABLE_1", "facets": {}}],
        outputs=[],
    )


def test_marquez_integration_test_refusals() -> None:
    # OpenLineageIntegrationTest.testSendOpenLineageEventFailsValidation (HTTP 422).
    event = base()
    event["inputs"][0]["name"] = None
    assert "null" in refused(event, "$.inputs[0].name")
    event = base()
    event["outputs"] = [
        {
            "namespace": "testing_namespace_1",
            "name": "OUT",
            "facets": {"schema": {**FACET, "fields": [{"assertion": "a", "success": True}]}},
        }
    ]
    assert "missing" in refused(event, "$.outputs[0].facets.schema.fields[0].name")
    event = base()
    event["job"]["name"] = None
    refused(event, "$.job.name")
    event = base()
    event["run"]["runId"] = None
    refused(event, "$.run.runId")
    event = base()
    event["run"]["facets"] = {
        "parent": {
            "_producer": "me",
            "_schemaURL": "https://me",
            "run": {},
            "job": {"namespace": "my-scheduler-namespace", "name": "myjob.mytask"},
        }
    }
    refused(event, "$.run.facets.parent.run.runId")
    # testSendOpenLineageEventFailsJsonProcessing (a date is not a ZonedDateTime).
    event = base()
    event["eventTime"] = "2021-11-03"
    assert "2025-01-02T03:04:05" in refused(event, "$.eventTime")  # the fix, by example
    # testSendOpenLineageBadArgument (HTTP 400): NamespaceName refuses an emoji.
    event = base()
    event["inputs"][0]["namespace"] = "sqlserver://myhost:3342;user=auser;password=😂;db=x"
    assert "NamespaceName" in refused(event, "$.inputs[0].namespace")


@pytest.mark.parametrize("field", ["eventTime", "run", "job", "producer"])
def test_a_run_event_without_a_required_field(field: str) -> None:
    event = base()
    del event[field]
    assert refused(event, f"$.{field}").startswith("missing")


def test_a_static_event_without_its_schema_url_is_read_as_a_run_event() -> None:
    # Marquez picks the class by schemaURL (EventTypeResolver): without it, a
    # DatasetEvent is a LineageEvent and fails for lacking run and job.
    event = {
        "eventTime": "2025-01-02T03:04:05Z",
        "producer": "p",
        "dataset": {"namespace": "s3://b", "name": "orders"},
    }
    assert event_kind(event) is EventKind.RUN
    message = refused(event, "$.run")
    assert "#/$defs/DatasetEvent" in message
    event["schemaURL"] = SPEC + "DatasetEvent"
    assert accepted(event)[0].kind is EventKind.DATASET
    del event["dataset"]  # Marquez would fail on it (NullPointerException)
    refused(event, "$.dataset")


def test_typed_facets_need_what_marquez_reads() -> None:
    event = base()
    event["job"]["facets"] = {"jobType": {**FACET, "processingType": "BATCH", "integration": "X"}}
    refused(event, "$.job.facets.jobType.jobType")
    event = base()
    event["job"]["facets"] = {"sql": {"query": "select 1", "_schemaURL": FACET["_schemaURL"]}}
    assert "_producer" in refused(event, "$.job.facets.sql._producer")
    event = base()
    event["inputs"][0]["facets"] = {"symlinks": {**FACET}}
    refused(event, "$.inputs[0].facets.symlinks.identifiers")
    event = base()
    event["inputs"][0]["facets"] = {"schema": {**FACET, "_schemaURL": "https://x/a b"}}
    assert "percent-encode" in refused(event, "$.inputs[0].facets.schema._schemaURL")
    event = base()
    event["inputs"][0]["facets"] = {"description": {"text": "a facet named description"}}
    refused(event, "$.inputs[0].facets.description")  # a String in DatasetFacets
    # The same shapes under a custom facet's name are not Marquez's business.
    event = base()
    event["inputs"][0]["facets"] = {"mySymlinks": {"anything": None}, "x": "not an object"}
    accepted(event)


@pytest.mark.parametrize(
    ("event_time", "fragment"),
    [
        ("2025-01-02T03:04:05+19:00", "offset"),
        ("+300000-01-01T00:00:00Z", "year"),
        ("2025-01-02T24:00:01", "hour"),
        ("2025-01-02T03:04:05.1234567890Z", "ISO-8601"),
        (9_300_000_000_000, "seconds since the epoch"),
        ("", "empty"),
    ],
)
def test_event_times_marquez_cannot_store(event_time: Any, fragment: str) -> None:
    event = base()
    event["eventTime"] = event_time
    assert fragment in refused(event, "$.eventTime")


@pytest.mark.parametrize(
    "event_time",
    [
        "2025-01-02T03:04",  # seconds are optional in ISO_LOCAL_DATE_TIME
        "2025-02-30T00:00:00Z",  # SMART resolving clamps to 02-28
        "2025-01-02T24:00",  # the next midnight
        "2025-01-02t03:04:05z",
        " 2025-01-02T03:04:05-05 ",  # Jackson trims; +HH alone is an offset
        "+12025-01-02T03:04:05Z",
        1735787045,  # seconds since the epoch
        1735787045.5,
    ],
)
def test_event_times_marquez_reads(event_time: Any) -> None:
    event = base()
    event["eventTime"] = event_time
    accepted(event)


def test_namespace_rules_follow_the_event_type() -> None:
    # An output namespace is checked only when Marquez writes a job version.
    odd = "kafka://a:9092,b:9092"
    event = base()
    event.update(eventType="START", outputs=[{"namespace": odd, "name": "t"}])
    accepted(event)
    event["eventType"] = "complete"  # Marquez compares case-insensitively
    assert "','" in refused(event, "$.outputs[0].namespace")
    # A DatasetEvent is stored without NamespaceName.
    dataset_event: dict[str, Any] = {
        "eventTime": "2025-01-02T03:04:05Z",
        "producer": "p",
        "schemaURL": SPEC + "DatasetEvent",
        "dataset": {"namespace": odd, "name": "t"},
    }
    accepted(dataset_event)
    job_event: dict[str, Any] = {**dataset_event, "schemaURL": SPEC + "JobEvent"}
    del job_event["dataset"]
    job_event.update(
        job={"namespace": "ns", "name": "j"}, outputs=[{"namespace": odd, "name": "t"}]
    )
    assert "JobEvent" in refused(job_event, "$.outputs[0].namespace")
    # A blank job name: stored on START without inputs, refused when COMPLETE.
    event = base()
    event.update(eventType="START", inputs=[], job={"namespace": "ns", "name": " "})
    accepted(event)
    event["eventType"] = "COMPLETE"
    assert "JobName" in refused(event, "$.job.name")


def test_scalars_where_marquez_has_strings_and_nulls_where_it_allows_them() -> None:
    # Jackson reads a number or boolean into a String; null is "absent" when optional.
    event = base()
    event["run"]["runId"] = 12345
    event["job"]["name"] = 42
    event["eventType"] = None
    event["inputs"] = None
    event["outputs"] = None
    event["run"]["facets"] = None
    _, verdict = accepted(event)
    assert verdict.run_id == "12345"
    event["inputs"] = [None]  # Marquez would fail on the element (HTTP 500)
    assert "null" in refused(event, "$.inputs[0]")
