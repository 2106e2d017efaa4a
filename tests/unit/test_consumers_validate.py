from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import column_lineage_dataset, parent_run, schema_dataset
from openlineage.client.serde import Serde

from consumers.dlq import Rejection
from consumers.lineage.validate import ValidEvent, validate
from lineagehub.openlineage_schema import EventKind

RUN_ID = "0190f3b0-7c1a-7d2e-8f00-0123456789ab"


def client_event() -> dict[str, Any]:
    """A RunEvent built by the official client, with the facets our runner emits."""
    schema = schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name="id", type="int64")]
    )
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            "id": column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace="file", name="/data/in.csv", field="id"
                    )
                ]
            )
        }
    )
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId="0190f3b0-0000-7000-8000-000000000001"),
        job=parent_run.Job(namespace="ns", name="pipeline"),
    )
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2025-01-02T03:04:05.123456Z",
        run=Run(runId=RUN_ID, facets={"parent": parent}),
        job=Job(namespace="ns", name="pipeline.transform"),
        producer="https://github.com/example/lineage-hub",
        inputs=[InputDataset(namespace="file", name="/data/in.csv", facets={"schema": schema})],
        outputs=[
            OutputDataset(
                namespace="file", name="/data/out.parquet", facets={"columnLineage": lineage}
            )
        ],
    )
    parsed: dict[str, Any] = json.loads(Serde.to_json(event))
    return parsed


def raw(event: Any) -> bytes:
    return json.dumps(event).encode()


def test_a_client_built_event_is_valid() -> None:
    verdict = validate(raw(client_event()))
    assert isinstance(verdict, ValidEvent)
    assert verdict.run_id == RUN_ID
    assert verdict.event_type == "COMPLETE"
    assert verdict.kind is EventKind.RUN and verdict.key == RUN_ID


def test_event_type_is_optional_and_running_is_allowed() -> None:
    event = client_event()
    del event["eventType"]
    assert isinstance(validate(raw(event)), ValidEvent)
    event["eventType"] = "RUNNING"
    assert isinstance(validate(raw(event)), ValidEvent)


def reject(event: Any) -> Rejection:
    verdict = validate(raw(event) if not isinstance(event, bytes) else event)
    assert isinstance(verdict, Rejection), verdict
    return verdict


def test_missing_run_id() -> None:
    event = client_event()
    del event["run"]["runId"]
    r = reject(event)
    assert r.reason == "schema"
    assert "$.run" in r.detail and "runId" in r.detail


@pytest.mark.parametrize(
    "event_time",
    [
        "2025-01-02 03:04:05",
        "2021-11-03",  # Marquez's own OpenLineageIntegrationTest: refused
        "2025-01-02T03:04:05+0200",
        "yesterday",
        "2025-13-02T03:04:05Z",
        "",
        True,
        None,
    ],
)
def test_bad_event_time(event_time: Any) -> None:
    event = client_event()
    event["eventTime"] = event_time
    r = reject(event)
    assert r.reason == "schema"
    assert "$.eventTime" in r.detail


def test_nanosecond_event_time_is_fine() -> None:
    event = client_event()
    event["eventTime"] = "2025-01-02T03:04:05.123456789+02:00"
    assert isinstance(validate(raw(event)), ValidEvent)


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("job", "name"), {"x": 42}, "$.job.name"),
        (("run", "runId"), None, "$.run.runId"),
        (("eventType",), ["DONE"], "$.eventType"),
        (("inputs",), {"namespace": "x"}, "$.inputs"),
        (("producer",), None, "$.producer"),
        (("run",), [], "$.run"),
    ],
)
def test_wrong_types(path: tuple[str, ...], value: Any, where: str) -> None:
    event = client_event()
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    r = reject(event)
    assert r.reason == "schema"
    assert where in r.detail


def test_facets_marquez_parses_are_checked() -> None:
    event = client_event()
    broken = copy.deepcopy(event)
    broken["outputs"][0]["facets"]["columnLineage"]["fields"]["id"]["inputFields"] = "id"
    assert "columnLineage" in reject(broken).detail
    broken = copy.deepcopy(event)
    broken["run"]["facets"]["parent"]["run"] = {}  # Marquez answers 422 (its own test case)
    assert "$.run.facets.parent.run.runId" in reject(broken).detail
    broken = copy.deepcopy(event)
    del broken["run"]["facets"]["parent"]["_producer"]
    assert "_producer" in reject(broken).detail


def test_not_json_and_not_an_object() -> None:
    assert reject(b"{not json").reason == "invalid_json"
    assert reject(b"\xff\xfe\x00garbage").reason == "invalid_json"
    assert reject(b"[1, 2]").reason == "schema"
    assert reject(b"").reason == "empty"
    assert validate(None) == Rejection("empty", "record has no value")


def test_too_large() -> None:
    event = client_event()
    event["job"]["facets"] = {"big": {"_producer": "x:y", "_schemaURL": "x:y", "v": "a" * 2000}}
    assert validate(raw(event), max_bytes=1000) == Rejection(
        "too_large", f"event is {len(raw(event))} bytes, the limit is 1000"
    )
