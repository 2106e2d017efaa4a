"""The lineage warehouse on a real embedded ClickHouse (chdb): what the writer stores,
how run state is derived, idempotency, and the graph reads through the read-only
SQL endpoint the chdb owner serves (the path the gateway takes on the local stack)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from consumers.health import Health, HealthServer
from consumers.otel.backend import ChdbBackend
from consumers.otel.decode import DecodeError
from consumers.stats import Stats
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage, event_time_ns
from consumers.warehouse.run_summary import run_summary
from gateway.clickhouse import HttpStore, MetricsUnavailable
from lineagehub.lineage_ids import parse_node
from lineagehub.warehouse_reader import BadParameter, LineageReader, NotFound, Walk, check_depth
from tests.warehouse_events import (
    PROJECTED_EDGES,
    dataset_event,
    dataset_in,
    dataset_out,
    job_event,
    later,
    new_run_id,
    run_event,
)

PG = "postgres://db.example:5432"
S3 = "s3://lake"
JOB = ("etl", "orders_daily")


@dataclass
class Warehouse:
    backend: ChdbBackend
    reader: LineageReader
    url: str
    tokens: int = 0

    async def store(self, *events: bytes, token: str | None = None) -> None:
        """Insert like one consumer batch: every table with one token."""
        self.tokens += 1
        tok = token or f"test/0/{self.tokens}"
        merged: dict[str, list[dict[str, object]]] = {}
        for event in events:
            for table, rows in decode_lineage(event).items():
                merged.setdefault(table, []).extend(rows)
        for table, rows in merged.items():
            await self.backend.insert(LINEAGE_SCHEMA.tables[table], rows, f"{tok}/{table}")

    async def count(self, sql: str) -> int:
        (row,) = await self.backend.query(sql)
        return int(next(iter(row.values())))


@pytest.fixture
async def wh(tmp_path: Path) -> AsyncIterator[Warehouse]:
    backend = ChdbBackend(str(tmp_path / "chdb"), database="otel")
    await backend.setup(LINEAGE_SCHEMA.create("otel", 0))
    server = HealthServer(Stats("t"), Health(), port=0, sql=backend.query_text)
    port = await server.start()
    url = f"http://127.0.0.1:{port}/"
    store = HttpStore(url, "otel")
    try:
        yield Warehouse(backend, LineageReader(store.rows, "otel"), url)
    finally:
        store.close()
        await server.stop()
        await backend.close()


# ---- run state by eventTime ------------------------------------------------------------


async def test_state_comes_from_event_time_not_arrival(wh: Warehouse) -> None:
    run = new_run_id()
    # Arrival order: COMPLETE, RUNNING (later eventTime!), START, OTHER (latest of all).
    await wh.store(run_event("COMPLETE", run, JOB, later(10)))
    await wh.store(run_event("RUNNING", run, JOB, later(20)))
    await wh.store(run_event("START", run, JOB, later(0)), run_event("OTHER", run, JOB, later(60)))
    found = await run_summary(wh.backend, run)
    assert found is not None
    assert found["state"] == "COMPLETE"  # terminal beats a later RUNNING; OTHER never reopens
    assert found["startTime"].startswith("2026-11-01 12:00:00")
    assert found["endTime"].startswith("2026-11-01 12:00:10")
    assert found["events"] == 4


async def test_latest_terminal_wins_and_running_beats_start(wh: Warehouse) -> None:
    failed, running = new_run_id(), new_run_id()
    await wh.store(
        run_event("FAIL", failed, JOB, later(30), error="boom"),
        run_event("COMPLETE", failed, JOB, later(5)),
        run_event("START", running, JOB, later(0)),
        run_event("RUNNING", running, JOB, later(1)),
    )
    runs = await wh.reader.runs_by_id([failed, running])
    assert runs[failed]["state"] == "FAIL"
    assert runs[failed]["errorMessage"] == "boom"
    assert runs[failed]["durationSeconds"] is not None
    assert runs[running]["state"] == "RUNNING"
    assert runs[running]["terminal"] is False
    assert runs[running]["endTime"] is None


async def test_equal_event_times_give_one_answer_whatever_the_arrival_order(
    wh: Warehouse,
) -> None:
    """A COMPLETE and a FAIL of one run at the same eventTime, and two runs of a job
    starting at the same eventTime, each stored in both orders (separate inserts, so
    separate parts read in either order): the failure wins, and a job's latest run is
    chosen by one rule whichever run came first."""
    at = later(7)
    states = {}
    for order in (("COMPLETE", "FAIL"), ("FAIL", "COMPLETE")):
        run = new_run_id()
        for state in order:
            await wh.store(
                run_event(state, run, JOB, at, error="boom" if state == "FAIL" else None)
            )
        states[order] = (await wh.reader.runs_by_id([run]))[run]["state"]
    assert set(states.values()) == {"FAIL"}, states

    latest, expected = {}, {}
    for job, reverse in ((("etl", "tie_a"), False), (("etl", "tie_b"), True)):
        runs = sorted([new_run_id(), new_run_id()], reverse=reverse)
        for run in runs:
            await wh.store(run_event("START", run, job, at))
        graph = await wh.reader.graph(Walk(parse_node(f"job:{job[0]}:{job[1]}"), 1, 1, 100))
        (node,) = [n for n in graph["graph"] if n["type"] == "JOB"]
        latest[job], expected[job] = node["data"]["latestRun"]["runId"], max(runs)
    # The same rule both ways (the greater id), whichever run was stored first.
    assert latest == expected


async def test_other_alone_and_start_without_end(wh: Warehouse) -> None:
    only_other = new_run_id()
    await wh.store(run_event("OTHER", only_other, JOB, later(3)))
    runs = await wh.reader.runs_by_id([only_other])
    assert runs[only_other]["state"] == "OTHER"
    assert runs[only_other]["startTime"] is not None  # the earliest event when no START


# ---- inputs and outputs accumulate; nothing doubles -----------------------------------


async def test_inputs_and_outputs_are_unioned_across_a_runs_events(wh: Warehouse) -> None:
    run = new_run_id()
    await wh.store(run_event("START", run, JOB, later(0), inputs=[dataset_in(PG, "public.orders")]))
    await wh.store(
        run_event(
            "COMPLETE",
            run,
            JOB,
            later(9),
            inputs=[dataset_in(PG, "public.customers")],
            outputs=[dataset_out(S3, "orders_clean", ("id", "int"), rows=37)],
        )
    )
    found = await wh.reader.run(run)
    assert [d["name"] for d in found["inputs"]] == ["public.customers", "public.orders"]
    assert [(d["name"], d["rowCount"]) for d in found["outputs"]] == [("orders_clean", 37)]
    assert found["outputs"][0]["fields"] == [{"name": "id", "type": "int"}]


async def test_a_redelivered_batch_adds_no_row(wh: Warehouse) -> None:
    run = new_run_id()
    batch = [
        run_event("START", run, JOB, later(0), inputs=[dataset_in(PG, "public.orders")]),
        run_event("COMPLETE", run, JOB, later(5), outputs=[dataset_out(S3, "o", rows=5)]),
    ]
    await wh.store(*batch, token="openlineage-events/0/10-11")
    await wh.store(*batch, token="openlineage-events/0/10-11")  # the same token: dropped
    for table in ("lineage_events", "lineage_io", "lineage_edges"):
        assert await wh.count(f"SELECT count() FROM otel.{table}") == 2, table
    # The edges' projection (sorted by destination) is in the same parts: not doubled.
    assert await wh.count(PROJECTED_EDGES) == 2


async def test_an_exact_duplicate_event_collapses_and_counts_once(wh: Warehouse) -> None:
    run = new_run_id()
    event = run_event("COMPLETE", run, JOB, later(5), outputs=[dataset_out(S3, "o", rows=5)])
    reordered = json.dumps(json.loads(event), sort_keys=False, indent=2).encode()
    await wh.store(event)
    await wh.store(reordered)  # another offset, other whitespace: the same event
    assert await wh.count("SELECT count() FROM otel.lineage_events FINAL") == 1
    history = await wh.reader.job_runs(*JOB, limit=10)
    assert [(r["runId"], r["rowsOutput"]) for r in history["runs"]] == [(run, 5)]
    found = await run_summary(wh.backend, run)
    assert found is not None and found["events"] == 1


# ---- static lineage and bad input ---------------------------------------------------


async def test_dataset_and_job_events_are_stored(wh: Warehouse) -> None:
    await wh.store(
        dataset_event(PG, "public.orders", later(0), ("id", "int"), ("amount", "double")),
        job_event(("etl", "designed"), later(1), [(PG, "public.orders")], [(S3, "designed_out")]),
    )
    kinds = await wh.backend.query(
        "SELECT Kind, count() AS n FROM otel.lineage_events GROUP BY Kind ORDER BY Kind"
    )
    assert [(k["Kind"], int(k["n"])) for k in kinds] == [("dataset", 1), ("job", 1)]
    graph = await wh.reader.graph(Walk(parse_node(f"dataset:{PG}:public.orders"), 0, 1))
    ids = {n["id"] for n in graph["graph"]}
    assert ids == {f"dataset:{PG}:public.orders", "job:etl:designed", f"dataset:{S3}:designed_out"}
    orders = next(n for n in graph["graph"] if n["id"] == f"dataset:{PG}:public.orders")
    assert [f["name"] for f in orders["data"]["fields"]] == ["id", "amount"]


def _run_with_output(output: str) -> bytes:
    return (
        b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}, '
        b'"job": {"namespace": "n", "name": "j"}, "outputs": [' + output.encode() + b"]}"
    )


@pytest.mark.parametrize(
    ("value", "reason", "where"),
    [
        (b"{not json", "invalid_json", ""),
        (b"[]", "invalid_event", "$"),
        # No schemaURL naming another kind: a RunEvent, as Marquez reads it.
        (b'{"eventTime": "2026-01-01T00:00:00Z"}', "invalid_event", "$.run.runId"),
        (
            b'{"eventTime": "yesterday", "run": {"runId": "x"}, '
            b'"job": {"namespace": "n", "name": "j"}}',
            "invalid_event",
            "$.eventTime",
        ),
        (
            b'{"eventTime": "2026-01-01T00:00:00Z", "run": {}, '
            b'"job": {"namespace": "n", "name": "j"}}',
            "invalid_event",
            "$.run.runId",
        ),
        (
            b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}, "job": {"name": "j"}}',
            "invalid_event",
            "$.job.namespace",
        ),
        (
            b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}, '
            b'"job": {"namespace": "n", "name": "j"}, "inputs": [{"name": "x"}]}',
            "invalid_event",
            "$.inputs[0].namespace",
        ),
        (
            b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}, '
            b'"job": {"namespace": "n", "name": "j"}, '
            b'"outputs": [{"namespace": "o", "name": "a"}, ["not", "a", "dataset"]]}',
            "invalid_event",
            "$.outputs[1]: expected an object",
        ),
        (
            b'{"eventTime": "3000-01-01T00:00:00Z", "run": {"runId": "r"}, '
            b'"job": {"namespace": "n", "name": "j"}}',
            "invalid_event",
            "1900..2262",
        ),
        (b'{"eventTime": "2026-01-01T00:00:00Z", "n": ' + b"1" * 5000 + b"}", "invalid_json", ""),
        (None, "empty_record", ""),
        # A DatasetEvent's one dataset is named by its own path.
        (
            b'{"eventTime": "2026-01-01T00:00:00Z", "schemaURL": '
            b'"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent", '
            b'"dataset": {"name": "t"}}',
            "invalid_event",
            "$.dataset.namespace: required",
        ),
        (
            b'{"eventTime": "2026-01-01T00:00:00Z", "schemaURL": '
            b'"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent"}',
            "invalid_event",
            "$.dataset: expected an object",
        ),
        # Python's parser takes NaN and Infinity; Marquez (Jackson) and JSON do not.
        (
            _run_with_output(
                '{"namespace": "n", "name": "o", "outputFacets": '
                '{"outputStatistics": {"rowCount": NaN}}}'
            ),
            "invalid_json",
            "NaN",
        ),
        (
            _run_with_output(
                '{"namespace": "n", "name": "o", "outputFacets": '
                '{"outputStatistics": {"size": -Infinity}}}'
            ),
            "invalid_json",
            "Infinity",
        ),
    ],
)
def test_what_cannot_be_stored_is_refused_with_the_path(
    value: bytes | None, reason: str, where: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_lineage(value)
    assert caught.value.reason == reason
    assert where in caught.value.detail


@pytest.mark.parametrize(
    "facets",
    [
        '{"schema": {"fields": 7}}',
        '{"schema": {"fields": [{"name": "a", "fields": 3}, 5, {"type": "int"}]}}',
        '{"columnLineage": {"fields": {"a": {"inputFields": [{"namespace": "i", '
        '"name": "s", "field": "f", "transformations": 5}]}}}}',
        '{"columnLineage": {"fields": {"a": {"inputFields": 9}}, "dataset": {"x": 1}}}',
    ],
)
def test_a_malformed_facet_is_ignored_not_fatal(facets: str) -> None:
    """A facet of an unexpected shape stays in the Payload only: it neither refuses the
    event nor raises anything but DecodeError (a TypeError would stop the consumer)."""
    tables = decode_lineage(
        _run_with_output(f'{{"namespace": "o", "name": "d", "facets": {facets}}}')
    )
    (io,) = tables["lineage_io"]
    assert (io["DatasetName"], io["FieldNames"]) == ("d", ["a"] if '"name": "a"' in facets else [])
    edges = {(e["Src"], e["Dst"], e["TransformType"]) for e in tables["lineage_edges"]}
    assert ("job:n:j", "dataset:o:d", "") in edges
    if '"transformations": 5' in facets:  # read as the per-field form, with no type
        assert ("datasetField:i:s:f", "datasetField:o:d:a", "") in edges


def test_nested_schema_fields_flatten_depth_first_whatever_comes_first() -> None:
    """Flat fields before and after nested ones, an empty `fields` list (what producers
    send for no children), a nameless field skipped with its children."""
    schema = {
        "fields": [
            {"name": "a", "type": "int", "fields": []},
            {
                "name": "b",
                "type": "struct",
                "fields": [
                    {"name": "c"},
                    {"name": "d", "type": "struct", "fields": [{"name": "e", "type": "int"}]},
                ],
            },
            {"type": "lost", "fields": [{"name": "x"}]},
            {"name": "f", "type": 5},
        ]
    }
    output = json.dumps({"namespace": "o", "name": "d", "facets": {"schema": schema}})
    (io,) = decode_lineage(_run_with_output(output))["lineage_io"]
    assert io["FieldNames"] == ["a", "b", "b.c", "b.d", "b.d.e", "f"]
    assert io["FieldTypes"] == ["int", "struct", "", "struct", "int", ""]


@pytest.mark.parametrize("nested", [False, True])
def test_a_null_among_the_fields_is_skipped_whether_or_not_one_is_nested(nested: bool) -> None:
    """A JSON null in a fields list is a field we cannot read, like a nameless one: the
    fields after it are kept, as in a flat schema, also once a nested field is present."""
    last: dict[str, object] = {"name": "b", "type": "int"}
    if nested:
        last = {**last, "type": "struct", "fields": [None, {"name": "c", "type": "int"}]}
    schema = {"fields": [{"name": "a", "type": "int"}, None, last]}
    output = json.dumps({"namespace": "o", "name": "d", "facets": {"schema": schema}})
    (io,) = decode_lineage(_run_with_output(output))["lineage_io"]
    assert io["FieldNames"] == (["a", "b", "b.c"] if nested else ["a", "b"])


def test_column_lineage_transformations_as_producers_write_them() -> None:
    """The list form (types of any JSON kind as text, long texts cut, masking only when
    true), the deprecated per-field form shared by every input of the field, and
    inputs missing a part skipped."""
    lineage = {
        "fields": {
            "a": {
                "inputFields": [
                    {
                        "namespace": "i",
                        "name": "s",
                        "field": "f",
                        "transformations": [
                            {"type": "DIRECT", "subtype": "IDENTITY", "masking": True},
                            {"type": 7, "description": "x" * 3000, "masking": "yes"},
                            "not a transformation",
                        ],
                    },
                    {"namespace": "i", "name": "s", "field": ""},
                ]
            },
            "b": {
                "transformationType": "IDENTITY",
                "transformationDescription": "copied",
                "inputFields": [
                    {"namespace": "i", "name": "s", "field": "g"},
                    {"namespace": "i", "name": "t", "field": "h", "transformations": []},
                ],
            },
        }
    }
    output = json.dumps({"namespace": "o", "name": "d", "facets": {"columnLineage": lineage}})
    edges = decode_lineage(_run_with_output(output))["lineage_edges"]
    column = [
        (
            e["Src"],
            e["Dst"],
            e["TransformType"],
            e["TransformSubtype"],
            len(e["TransformDescription"]),
            e["Masking"],
        )
        for e in edges
        if e["Kind"] == "column"
    ]
    assert column == [
        ("datasetField:i:s:f", "datasetField:o:d:a", "DIRECT", "IDENTITY", 0, 1),
        ("datasetField:i:s:f", "datasetField:o:d:a", "7", "", 2000, 0),
        ("datasetField:i:s:g", "datasetField:o:d:b", "IDENTITY", "", 6, 0),
        ("datasetField:i:t:h", "datasetField:o:d:b", "IDENTITY", "", 6, 0),
    ]


@pytest.mark.parametrize("extra", [0, 1])
def test_transformation_texts_cut_at_their_limits(extra: int) -> None:
    """A transformation's type and subtype keep 64 characters, its description 2,000:
    exactly the limit is kept whole, one past it is cut (each cell on its own)."""
    transformation = {
        "type": "T" * (64 + extra),
        "subtype": "S" * (64 + extra),
        "description": "d" * (2000 + extra),
    }
    field = {"namespace": "i", "name": "s", "field": "f", "transformations": [transformation]}
    deprecated = {
        "transformationType": "T" * (64 + extra),
        "transformationDescription": "d" * (2000 + extra),
        "inputFields": [{"namespace": "i", "name": "s", "field": "g"}],
    }
    lineage = {"fields": {"a": {"inputFields": [field]}, "b": deprecated}}
    output = json.dumps({"namespace": "o", "name": "d", "facets": {"columnLineage": lineage}})
    edges = decode_lineage(_run_with_output(output))["lineage_edges"]
    cells = [
        (e["Src"], e["TransformType"], e["TransformSubtype"], e["TransformDescription"])
        for e in edges
        if e["Kind"] == "column"
    ]
    assert cells == [
        ("datasetField:i:s:f", "T" * 64, "S" * 64, "d" * 2000),
        ("datasetField:i:s:g", "T" * 64, "", "d" * 2000),
    ]


def test_statistics_taken_from_the_first_facets_that_have_them() -> None:
    """Each statistics facet as outputFacets, then inputFacets, then facets has it (the
    first that has the name decides, even when it is not an object); a count missing from
    one facet is taken from the next facet by name; `bytes` stands for `size`."""
    output = json.dumps(
        {
            "namespace": "o",
            "name": "d",
            "facets": {
                "outputStatistics": {"rowCount": 1, "size": 1, "fileCount": 1},
                "inputStatistics": {"fileCount": 9},
                "dataQualityMetrics": {"rowCount": 5, "bytes": 6, "fileCount": 7},
            },
            "inputFacets": {"outputStatistics": {"rowCount": 2}, "inputStatistics": "broken"},
            "outputFacets": {"outputStatistics": {"rowCount": 3.0}},
        }
    )
    (io,) = decode_lineage(_run_with_output(output))["lineage_io"]
    assert (io["RowCount"], io["Bytes"], io["FileCount"]) == (3, 6, 7)


def test_datasets_named_by_scalars_are_stored_as_text() -> None:
    """A dataset's namespace and name given as a number or boolean (Marquez reads them
    into strings) are its text in io rows and in its node ids, input and output alike."""
    value = (
        b'{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "r"}, '
        b'"job": {"namespace": "n", "name": "j"}, '
        b'"inputs": [{"namespace": 7, "name": true}], '
        b'"outputs": [{"namespace": "o", "name": 1.5}]}'
    )
    tables = decode_lineage(value)
    io = [(r["DatasetNamespace"], r["DatasetName"]) for r in tables["lineage_io"]]
    assert io == [("7", "true"), ("o", "1.5")]
    edges = [(e["Src"], e["Dst"]) for e in tables["lineage_edges"]]
    assert edges == [("dataset:7:true", "job:n:j"), ("job:n:j", "dataset:o:1.5")]
    assert '"name":true' in tables["lineage_events"][0]["Payload"]  # the event as sent


@pytest.mark.parametrize(
    "number", ["123456789012345678901234567890", "-9223372036854775809", "18446744073709551616"]
)
def test_integers_past_64_bits_are_stored_as_sent(number: str) -> None:
    """orjson reads them as floats (1.2345678901234568e+29); Marquez keeps every digit,
    and so does the Payload (and so the EventHash of the event as sent)."""
    value = _run_with_output(f'{{"namespace": "o", "name": "d", "big": {number}}}')
    (event,) = decode_lineage(value)["lineage_events"]
    assert f'"big":{number}' in event["Payload"]
    assert "e+" not in event["Payload"]


def test_lone_surrogates_are_stored_as_replacement_characters() -> None:
    """orjson refuses lone surrogates and integers past 64 bits, which Marquez stores: such
    an event is parsed the slow way, each of its texts stored as valid UTF-8 (U+FFFD)
    and the Payload kept as sent."""
    value = _run_with_output(
        '{"namespace": "o", "name": "d\\ud800", "facets": {"columnLineage": {"fields": '
        '{"out\\udc00": {"inputFields": [{"namespace": "i", "name": "s", "field": "f\\ud800", '
        '"transformations": [{"type": "DIRECT", "description": "\\udfff"}]}]}}}}, '
        '"big": 123456789012345678901234567890}'
    )
    tables = decode_lineage(value)
    (edge_io, edge_column) = tables["lineage_edges"]
    assert edge_io["Dst"] == "dataset:o:d\ufffd"
    assert (edge_column["Src"], edge_column["Dst"]) == (
        "datasetField:i:s:f\ufffd",
        "datasetField:o:d\ufffd:out\ufffd",
    )
    assert edge_column["TransformDescription"] == "\ufffd"
    (event,) = tables["lineage_events"]
    assert "\\ud800" in event["Payload"] and "123456789012345678901234567890" in event["Payload"]
    for rows in tables.values():
        for row in rows:
            for value in row.values():
                for text in value if isinstance(value, list) else [value]:
                    if isinstance(text, str):
                        text.encode("utf-8")


@pytest.mark.parametrize("depth", [600, 50_000])
def test_a_deeply_nested_event_orjson_refuses_decodes_or_is_refused(depth: int) -> None:
    """An event orjson refuses (a lone surrogate) is walked to make its texts storable: one
    nested past Python's recursion limit is stored, one too deep even for `json` is a
    DecodeError, never a RecursionError that would take the consumer down."""
    deep = '{"a": ' * depth + '"x\\ud800"' + "}" * depth
    value = _run_with_output('{"namespace": "o", "name": "d", "facets": {"deep": ' + deep + "}}")
    try:
        tables = decode_lineage(value)
    except DecodeError as exc:
        assert depth > 1000 and exc.reason == "invalid_json"
        return
    assert depth == 600
    (event,) = tables["lineage_events"]
    assert event["Payload"].count('{"a":') == depth and "\\ud800" in event["Payload"]
    assert tables["lineage_io"][0]["DatasetName"] == "d"


def test_event_times_as_producers_send_them() -> None:
    base = event_time_ns("2026-11-01T12:00:00Z")
    assert event_time_ns("2026-11-01T12:00:00") == base  # naive: UTC
    assert event_time_ns("2026-11-01T13:00:00+01:00") == base
    assert event_time_ns("2026-11-01T12:00:00.123456789Z") == base + 123_456_789
    assert event_time_ns("2026-11-01T12:00:00.5-0030") == base + 1_800 * 10**9 + 500_000_000
    # What else Marquez's FlexibleDateTimeDeserializer reads:
    assert event_time_ns("2026-11-01t12:00z") == base  # no seconds, lower case
    assert event_time_ns("2026-11-01T14:00:00+02") == base  # an hours-only offset
    assert event_time_ns("2026-10-31T24:00:00Z") == event_time_ns("2026-11-01T00:00:00Z")
    assert event_time_ns("2026-02-30T00:00:00Z") == event_time_ns("2026-02-28T00:00:00Z")
    assert event_time_ns(base // 10**9) == base  # seconds since the epoch


# ---- graph reads --------------------------------------------------------------------


async def chain(wh: Warehouse, length: int) -> list[str]:
    """datasets d0 -> job j1 -> d1 -> job j2 -> d2 ... (each job one COMPLETE run)."""
    events = []
    for i in range(1, length + 1):
        events.append(
            run_event(
                "COMPLETE",
                new_run_id(),
                ("etl", f"j{i}"),
                later(i),
                inputs=[dataset_in(S3, f"d{i - 1}")],
                outputs=[dataset_out(S3, f"d{i}", ("id", "int"))],
            )
        )
    await wh.store(*events)
    return [f"dataset:{S3}:d{i}" for i in range(length + 1)]


async def test_graph_depths_are_separate_and_count_job_hops(wh: Warehouse) -> None:
    datasets = await chain(wh, 6)
    middle = parse_node(datasets[3])
    graph = await wh.reader.graph(Walk(middle, 1, 2))
    ids = {n["id"] for n in graph["graph"]}
    assert ids == {
        datasets[2],
        "job:etl:j3",
        datasets[3],  # one job hop up
        "job:etl:j4",
        datasets[4],
        "job:etl:j5",
        datasets[5],  # two job hops down
    }
    assert graph["truncated"] is False
    job = next(n for n in graph["graph"] if n["id"] == "job:etl:j4")
    assert job["data"]["latestRun"]["state"] == "COMPLETE"
    assert job["inEdges"] == [{"origin": datasets[3], "destination": "job:etl:j4"}]
    assert all(e["lastRunId"] for e in graph["edges"])


async def test_graph_is_cut_at_the_node_limit_and_says_so(wh: Warehouse) -> None:
    datasets = await chain(wh, 6)
    graph = await wh.reader.graph(Walk(parse_node(datasets[0]), 0, 6, max_nodes=4))
    assert graph["truncated"] is True
    assert len(graph["graph"]) == 4


async def test_graph_time_travel(wh: Warehouse) -> None:
    datasets = await chain(wh, 3)  # j1 at +1 s, j2 at +2 s, j3 at +3 s
    as_of = event_time_ns(later(2).isoformat())
    graph = await wh.reader.graph(Walk(parse_node(datasets[0]), 0, 5, as_of_ns=as_of))
    assert {n["id"] for n in graph["graph"]} == {
        datasets[0],
        "job:etl:j1",
        datasets[1],
        "job:etl:j2",
        datasets[2],
    }


async def test_unknown_node_is_not_found(wh: Warehouse) -> None:
    with pytest.raises(NotFound):
        await wh.reader.graph(Walk(parse_node("dataset:s3://nowhere:x"), 1, 1))


async def test_column_lineage_up_and_down_with_transformations(wh: Warehouse) -> None:
    await wh.store(
        run_event(
            "COMPLETE",
            new_run_id(),
            ("etl", "clean"),
            later(1),
            inputs=[dataset_in(PG, "raw", ("amount", "double"))],
            outputs=[
                dataset_out(
                    S3,
                    "clean",
                    ("amount_eur", "double"),
                    columns={"amount_eur": [(PG, "raw", "amount")]},
                )
            ],
        ),
        run_event(
            "COMPLETE",
            new_run_id(),
            ("etl", "report"),
            later(2),
            inputs=[dataset_in(S3, "clean")],
            outputs=[dataset_out(S3, "report", columns={"total": [(S3, "clean", "amount_eur")]})],
        ),
    )
    field = parse_node(f"datasetField:{S3}:clean:amount_eur")
    both = await wh.reader.column_lineage(Walk(field, 5, 5))
    assert {n["id"] for n in both["graph"]} == {
        f"datasetField:{PG}:raw:amount",
        f"datasetField:{S3}:clean:amount_eur",
        f"datasetField:{S3}:report:total",
    }
    first = next(e for e in both["edges"] if e["origin"].endswith(":raw:amount"))
    assert first["transformations"] == [
        {"type": "DIRECT", "subtype": "IDENTITY", "description": None, "masking": False}
    ]
    up_only = await wh.reader.column_lineage(Walk(field, 5, 0))
    assert f"datasetField:{S3}:report:total" not in {n["id"] for n in up_only["graph"]}


async def test_dataset_versions_writers_and_freshness(wh: Warehouse) -> None:
    first, second, reader = new_run_id(), new_run_id(), new_run_id()
    await wh.store(
        run_event("COMPLETE", first, JOB, later(1), outputs=[dataset_out(S3, "t", ("id", "int"))]),
        run_event(
            "COMPLETE",
            second,
            JOB,
            later(2),
            outputs=[dataset_out(S3, "t", ("id", "bigint"), ("note", "string"))],
        ),
        run_event("FAIL", reader, ("etl", "consumer"), later(3), inputs=[dataset_in(S3, "t")]),
    )
    ds = await wh.reader.dataset(S3, "t")
    assert [v["runId"] for v in ds["versions"]] == [first, second]
    assert ds["versions"][1]["changes"] == {
        "added": ["note"],
        "removed": [],
        "typeChanged": [{"name": "id", "from": "int", "to": "bigint"}],
    }
    assert [w["runId"] for w in ds["writtenBy"]] == [first, second]
    assert [(r["runId"], r["state"]) for r in ds["readBy"]] == [(reader, "FAIL")]
    assert ds["lastSuccessfulWrite"].startswith("2026-11-01T12:00:02")
    assert ds["freshnessSeconds"] > 0


async def test_search_finds_jobs_and_datasets(wh: Warehouse) -> None:
    await chain(wh, 2)
    found = await wh.reader.search("J2", 10)
    assert [r["nodeId"] for r in found] == ["job:etl:j2"]
    found = await wh.reader.search("d", 10)
    assert {r["nodeId"] for r in found} == {f"dataset:{S3}:d{i}" for i in range(3)}


def test_depth_limits() -> None:
    with pytest.raises(BadParameter) as caught:
        check_depth("upstreamDepth", 21)
    assert caught.value.param == "upstreamDepth"


# ---- the read-only SQL door ----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO otel.lineage_events (EventHash) VALUES ('x')",
        "DROP TABLE otel.lineage_events",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT 1; DROP TABLE otel.lineage_events",
        "SELECT * FROM (SELECT 1) SETTINGS readonly = 0) ; DROP TABLE otel.lineage_io; SELECT (1",
    ],
)
async def test_the_sql_endpoint_only_reads(wh: Warehouse, query: str) -> None:
    async with httpx.AsyncClient() as client:
        reply = await client.post(wh.url, content=query.encode())
    assert reply.status_code in {400, 500}
    assert (
        await wh.count(
            "SELECT count() FROM system.tables WHERE database = 'otel' AND name LIKE 'lineage_%'"
        )
        == 5  # events, io, edges and two views: edges_rev, runs
    )
    assert await wh.count("SELECT count() FROM otel.lineage_events") == 0


async def test_the_store_being_unreachable_is_unavailable() -> None:
    store = HttpStore("http://127.0.0.1:9/", "otel", timeout_s=2)
    try:
        with pytest.raises(MetricsUnavailable):
            await asyncio.wait_for(store.rows("SELECT 1"), 10)
    finally:
        store.close()


async def test_an_event_with_a_lone_surrogate_is_stored(wh: Warehouse) -> None:
    """Marquez's parser takes `\\ud800` (the lineage consumer forwards such events);
    the warehouse stores it too instead of failing the batch."""
    run = new_run_id()
    event = run_event("COMPLETE", run, ("etl", "odd"), later(1)).replace(
        b'"name": "odd"', b'"name": "odd\\ud800"'
    )
    assert b"\\ud800" in event
    await wh.store(event)
    found = await run_summary(wh.backend, run)
    assert found is not None and found["state"] == "COMPLETE"
    assert found["job"]["name"].startswith("odd")
