"""Marquez stores OpenLineage run events and serves the run, job and datasets back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

if TYPE_CHECKING:
    from tests.conftest import StackHandle

pytestmark = [pytest.mark.dataplane, pytest.mark.usefixtures("marquez_up")]

PRODUCER = "https://github.com/lineage-hub/lineage-hub/tests"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"


def _event(
    event_type: str, run_id: str, *, namespace: str, job: str, inputs: str, outputs: str
) -> dict[str, Any]:
    schema_facet = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
        "fields": [{"name": "id", "type": "BIGINT"}, {"name": "email", "type": "VARCHAR"}],
    }
    return {
        "eventType": event_type,
        "eventTime": datetime.now(UTC).isoformat(),
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": namespace, "name": job, "facets": {}},
        "inputs": [{"namespace": namespace, "name": inputs, "facets": {"schema": schema_facet}}],
        "outputs": [{"namespace": namespace, "name": outputs, "facets": {"schema": schema_facet}}],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


async def test_run_job_and_datasets_round_trip(stack: StackHandle) -> None:
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    job, source, sink = "etl.transform", "raw.customers", "clean.customers"
    run_id = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=stack.env["MARQUEZ_URL"], timeout=10.0) as client:
        for event_type in ("START", "COMPLETE"):
            resp = await client.post(
                "/api/v1/lineage",
                json=_event(
                    event_type, run_id, namespace=namespace, job=job, inputs=source, outputs=sink
                ),
            )
            assert resp.status_code in (200, 201), resp.text

        run = (await client.get(f"/api/v1/jobs/runs/{run_id}")).json()
        assert run["id"] == run_id
        assert run["state"] == "COMPLETED"

        resp = await client.get(f"/api/v1/namespaces/{namespace}/jobs/{quote(job, safe='')}")
        assert resp.status_code == 200, resp.text
        stored_job = resp.json()
        assert stored_job["latestRun"]["id"] == run_id
        assert {d["name"] for d in stored_job["inputs"]} == {source}
        assert {d["name"] for d in stored_job["outputs"]} == {sink}

        resp = await client.get(f"/api/v1/namespaces/{namespace}/datasets/{quote(sink, safe='')}")
        assert resp.status_code == 200, resp.text
        dataset = resp.json()
        assert dataset["name"] == sink
        assert [f["name"] for f in dataset["fields"]] == ["id", "email"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"eventType": "START"}',  # no run, job, eventTime or producer
        b"{not json",
    ],
)
async def test_malformed_event_is_a_client_error(stack: StackHandle, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=stack.env["MARQUEZ_URL"], timeout=10.0) as client:
        resp = await client.post(
            "/api/v1/lineage", content=body, headers={"Content-Type": "application/json"}
        )
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
