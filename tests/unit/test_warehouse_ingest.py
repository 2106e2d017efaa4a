"""The writer's door, `lineage_ingest`, and the edges ClickHouse computes from it
(`consumers/warehouse/edges_sql.py`), against Python's rules (`decode_lineage`, each
row inserted into its table): events written to hit every rule of the edges, each
stored both ways into a real chdb with every row of every table compared; the events
SQL cannot render exactly go the Python way (and still store the same rows); a batch
sent again under its token adds no row; a warehouse made before the door migrates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumers.otel.backend import ChdbBackend
from consumers.otel.columns import ArrowRows
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from tests.unit import test_warehouse_batch
from tests.unit.test_warehouse_batch import (
    TABLES,
    batch_path,
    producer_samples,
    row_path,
    same_in_chdb,
    stored_rows,
)
from tests.warehouse_events import PROJECTED_EDGES

RUN = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
JOB = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent"
DATASET = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent"


def run_event(n: int, outputs: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": f"2026-11-01T12:00:{n % 60:02d}Z",
        "producer": "test",
        "schemaURL": RUN,
        "run": {"runId": f"00000000-0000-4000-8000-{n:012d}"},
        "job": {"namespace": "etl", "name": f"job{n}"},
        "inputs": [{"namespace": "pg://db:5432", "name": "public.src"}],
        "outputs": outputs,
        **extra,
    }


def lineage(fields: Any, **facet: Any) -> dict[str, Any]:
    """An output dataset with a column lineage facet."""
    return {
        "namespace": "s3://lake",
        "name": "out",
        "facets": {"columnLineage": {"fields": fields, **facet}},
    }


SRC = {"namespace": "pg://db:5432", "name": "public.src", "field": "a"}

# (what the case exercises, the event, whether SQL computes its edges)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    (
        "transformations: objects only, clipped, masking only when JSON true",
        run_event(
            1,
            [
                lineage(
                    {
                        "x": {
                            "inputFields": [
                                {
                                    **SRC,
                                    "transformations": [
                                        {
                                            "type": "T" * 70,
                                            "subtype": "ü" * 65,
                                            "description": "é😀" * 1500,
                                            "masking": True,
                                        },
                                        "not an object",
                                        None,
                                        {"type": "INDIRECT", "masking": "true"},
                                        {"type": "DIRECT", "masking": 1},
                                        {"subtype": "SORT", "masking": None},
                                        {},
                                    ],
                                }
                            ]
                        }
                    }
                )
            ],
        ),
        True,
    ),
    (
        "the deprecated per-field form: no transformation object, or none given",
        run_event(
            2,
            [
                lineage(
                    {
                        "x": {
                            "inputFields": [SRC, {**SRC, "transformations": "x"}],
                            "transformationType": "IDENTITY",
                            "transformationDescription": "copied",
                        },
                        "y": {"inputFields": [{**SRC, "transformations": [1, []]}]},
                        "z": {"inputFields": [{**SRC, "transformations": []}]},
                    }
                )
            ],
        ),
        True,
    ),
    (
        "inputs that are not objects or lack a non-empty string namespace, name, field",
        run_event(
            3,
            [
                lineage(
                    {
                        "x": {
                            "inputFields": [
                                7,
                                None,
                                [SRC],
                                {**SRC, "namespace": ""},
                                {**SRC, "name": 5},
                                {"namespace": "n", "name": "t"},
                                {**SRC, "field": None},
                                {**SRC, "field": "kept"},
                            ]
                        },
                        "no inputs": {"inputFields": "x"},
                        "number": 5,
                        "null": None,
                        "list": [SRC],
                        "empty": {},
                    }
                )
            ],
        ),
        True,
    ),
    (
        "indirect lineage (the facet's dataset array), and one that is not an array",
        run_event(
            4,
            [
                lineage(
                    {},
                    dataset=[
                        {**SRC, "transformations": [{"type": "INDIRECT", "subtype": "FILTER"}]},
                        {**SRC, "field": "b"},
                    ],
                ),
                {
                    "namespace": "s3://lake",
                    "name": "other",
                    "facets": {"columnLineage": {"dataset": {"a": 1}}},
                },
            ],
        ),
        True,
    ),
    (
        "facets, columnLineage and fields of the wrong kind; an input's own lineage",
        run_event(
            5,
            [
                {"namespace": "a", "name": "b", "facets": [1]},
                {"namespace": "a", "name": "c", "facets": {"columnLineage": "{}"}},
                {"namespace": "a", "name": "d", "facets": {"columnLineage": {"fields": [1]}}},
                {"namespace": "a", "name": "e", "facets": None},
            ],
            inputs=[lineage({"x": {"inputFields": [SRC]}})],
        ),
        True,
    ),
    (
        "names with quotes, backslashes, control characters, non-ASCII",
        run_event(
            6,
            [
                {
                    "namespace": 's3://b"q\\',
                    "name": "tab\tle\u0000ü😀",
                    "facets": {
                        "columnLineage": {
                            "fields": {
                                'o"u\\t\n': {
                                    "inputFields": [
                                        {"namespace": "ñ", "name": "x\u2028", "field": "f\"'"}
                                    ]
                                }
                            }
                        }
                    },
                }
            ],
        ),
        True,
    ),
    (
        "no job node (a blank job name): column lineage only",
        {
            **run_event(7, [lineage({"x": {"inputFields": [SRC]}})]),
            "job": {"namespace": "etl", "name": "\u2003 "},
        },
        True,
    ),
    (
        "a JobEvent: static edges",
        {
            "eventTime": "2026-11-01T12:00:00Z",
            "producer": "test",
            "schemaURL": JOB,
            "job": {"namespace": "etl", "name": "designed"},
            "inputs": [{"namespace": "a", "name": "in"}],
            "outputs": [lineage({"x": {"inputFields": [SRC]}})],
        },
        True,
    ),
    (
        "a DatasetEvent's column lineage",
        {
            "eventTime": "2026-11-01T12:00:00Z",
            "producer": "test",
            "schemaURL": DATASET,
            "dataset": lineage({"x": {"inputFields": [SRC]}}),
        },
        True,
    ),
    (
        "no inputs or outputs at all",
        {**run_event(8, []), "inputs": None},
        True,
    ),
    # Values Python turns into text its own way: these events' edges stay in Python.
    (
        "a transformation type that is a number",
        run_event(
            9, [lineage({"x": {"inputFields": [{**SRC, "transformations": [{"type": 5}]}]}})]
        ),
        False,
    ),
    (
        "a subtype that is true, a description that is an object",
        run_event(
            10,
            [
                lineage(
                    {
                        "x": {
                            "inputFields": [
                                {
                                    **SRC,
                                    "transformations": [{"subtype": True, "description": {"a": 1}}],
                                }
                            ]
                        }
                    }
                )
            ],
        ),
        False,
    ),
    (
        "a deprecated transformation type that is a float",
        run_event(11, [lineage({"x": {"inputFields": [SRC], "transformationType": 1.5}})]),
        False,
    ),
    (
        "a dataset namespace that is a number, a name that is a boolean",
        run_event(12, [{"namespace": 5, "name": True}]),
        False,
    ),
]


chdb = test_warehouse_batch.chdb  # the fixture: an empty warehouse in a fresh chdb


def sql_edges(record: bytes) -> bool:
    (result,) = batch_path([record])[1]["lineage_ingest"].rows()
    return bool(result["SqlEdges"])


@pytest.mark.parametrize(("case", "event", "in_sql"), CASES, ids=[c[0] for c in CASES])
async def test_each_edge_rule_stores_the_rows_python_gives(
    chdb: ChdbBackend, case: str, event: dict[str, Any], in_sql: bool
) -> None:
    record = json.dumps(event).encode()
    assert row_path([record])[0] == ["stored"], case
    assert sql_edges(record) is in_sql
    rows = await same_in_chdb(chdb, [record], "case")
    assert rows >= 1  # the event row at least (rows compared above)


async def test_every_case_in_one_batch(chdb: ChdbBackend) -> None:
    """All the cases together, between producers' events: both paths in one insert."""
    records = [json.dumps(event).encode() for _, event, _ in CASES]
    records = [r for pair in zip(records, producer_samples(), strict=False) for r in pair]
    edges = row_path(records)[1]["lineage_edges"]
    assert len(edges) > 3 * len(CASES)
    await same_in_chdb(chdb, records, "together")


def test_producers_events_take_the_sql_path() -> None:
    """What real producers send has its edges computed by ClickHouse (the comparisons in
    `test_warehouse_batch` are about the SQL path, not the Python one)."""
    assert all(sql_edges(record) for record in producer_samples())


async def counts(backend: ChdbBackend) -> list[int]:
    out = []
    for sql in [f"SELECT count() AS n FROM otel.{t}" for t in TABLES] + [PROJECTED_EDGES]:
        (row,) = await backend.query(sql)
        out.append(int(row["n"] or 0))
    return out


async def insert(backend: ChdbBackend, tables: dict[str, ArrowRows], token: str) -> None:
    for name, rows in tables.items():
        await backend.insert(LINEAGE_SCHEMA.tables[name], rows, f"{token}/{name}")


async def test_a_batch_sent_again_under_its_token_adds_no_row(chdb: ChdbBackend) -> None:
    records = producer_samples() + [json.dumps(event).encode() for _, event, _ in CASES]
    _, tables = batch_path(records)
    await insert(chdb, tables, "group/topic/0/0-99/digest")
    stored = await counts(chdb)
    assert stored[0] == len(records) and stored[2] > 4 * len(records)
    assert stored[3] == stored[2]  # the projection sorted by destination holds each edge
    await insert(chdb, tables, "group/topic/0/0-99/digest")
    assert await counts(chdb) == stored
    await insert(chdb, tables, "group/topic/0/0-99/another-digest")  # not a replay
    assert await counts(chdb) == [2 * n for n in stored]


async def test_a_warehouse_made_before_the_door_migrates(tmp_path: Path) -> None:
    """Rows the previous writer stored stay; the writer starting adds the door and its
    views (twice: harmless); what it then stores is what the row path stores."""
    old_records, new_records = producer_samples()[:20], producer_samples()[20:]
    backend = ChdbBackend(str(tmp_path / "chdb"), database="otel")
    try:
        before = [s for s in LINEAGE_SCHEMA.create("otel", 0) if "lineage_ingest" not in s]
        await backend.setup(before)
        _, old_rows = row_path(old_records)
        for table, rows in old_rows.items():
            await backend.insert(LINEAGE_SCHEMA.tables[table], rows, f"old/{table}")
        await backend.setup(LINEAGE_SCHEMA.create("otel", 0))
        await backend.setup(LINEAGE_SCHEMA.create("otel", 0))
        await insert(backend, batch_path(new_records)[1], "new")
        migrated = []
        for table in TABLES:
            text = await backend.query_text(f"SELECT * FROM otel.{table} ORDER BY ALL")
            migrated += [f"{table} {line}" for line in text.splitlines()]
        _, all_rows = row_path(old_records + new_records)
        assert migrated == await stored_rows(backend, all_rows, "reference")
    finally:
        await backend.close()
