"""Hops up the lineage graph read `lineage_edges` through its `by_dst` projection, not a
reverse table a materialized view filled: the readers answer exactly as before on the
same producer samples, a warehouse made before is migrated in place when the writer
starts (the old view and table gone, the projection built for the parts written
before), and every read by destination uses the projection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from consumers.otel.backend import ChdbBackend
from consumers.otel.ddl import render_statements
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage, event_time_ns
from lineagehub.lineage_ids import parse_node
from lineagehub.warehouse_reader import LineageReader, NotFound, Walk
from tests.unit.test_warehouse_batch import producer_samples
from tests.warehouse_events import (
    PROJECTED_EDGES,
    dataset_in,
    dataset_out,
    later,
    new_run_id,
    run_event,
)

# The edge tables as the writer made them before: a reverse copy of every edge row
# sorted by destination, filled by a materialized view (what a running stack holds).
_BEFORE_EDGES = """(
    Src String, Dst String, Kind LowCardinality(String), RunId String,
    EventTime DateTime64(9, 'UTC'), EventHash String, JobNamespace String, JobName String,
    TransformType LowCardinality(String), TransformSubtype LowCardinality(String),
    TransformDescription String, Masking UInt8
) ENGINE = ReplacingMergeTree"""
_BEFORE = (
    f"CREATE TABLE {{db}}.lineage_edges {_BEFORE_EDGES} "
    "ORDER BY (Src, Kind, Dst, RunId, EventHash, TransformType, TransformSubtype) "
    "SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 256",
    f"CREATE TABLE {{db}}.lineage_edges_rev {_BEFORE_EDGES} "
    "ORDER BY (Dst, Kind, Src, RunId, EventHash, TransformType, TransformSubtype) "
    "SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 256",
    "CREATE MATERIALIZED VIEW {db}.lineage_edges_rev_mv TO {db}.lineage_edges_rev "
    "AS SELECT * FROM {db}.lineage_edges",
)

FILLER = "filler"  # the namespace of edges that only make the table big


class ReaderBefore(LineageReader):
    """The reader as it was: hops up read the reverse table."""

    by_destination = "lineage_edges_rev"


def before_statements() -> list[str]:
    """Today's statements with the edge tables as they were made before."""
    today = LINEAGE_SCHEMA.create("otel", 0)
    others = [s for s in today if "lineage_edges" not in s]
    return [*others, *render_statements(_BEFORE, "otel", 0)[1:]]


def column_chain() -> list[bytes]:
    """Two jobs chained through column lineage, so hops up cross several edges."""
    pg, s3 = "postgres://db:5432", "s3://lake"
    return [
        run_event(
            "COMPLETE",
            new_run_id(),
            ("etl", "clean"),
            later(1),
            inputs=[dataset_in(pg, "raw", ("amount", "double"))],
            outputs=[
                dataset_out(
                    s3, "clean", ("eur", "double"), columns={"eur": [(pg, "raw", "amount")]}
                )
            ],
        ),
        run_event(
            "COMPLETE",
            new_run_id(),
            ("etl", "report"),
            later(2),
            inputs=[dataset_in(s3, "clean")],
            outputs=[dataset_out(s3, "report", columns={"total": [(s3, "clean", "eur")]})],
        ),
    ]


async def store(backend: ChdbBackend, events: list[bytes], token: str) -> None:
    merged: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        for table, rows in decode_lineage(event).items():
            merged.setdefault(table, []).extend(rows)
    for table, rows in merged.items():
        await backend.insert(LINEAGE_SCHEMA.tables[table], rows, f"{token}/{table}")


async def answers(reader: LineageReader, nodes: list[str], as_of: int) -> list[Any]:
    """Every graph and column lineage read of every node, up and down, now and as of a
    past time (a NotFound is an answer too)."""

    async def read(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except NotFound as exc:
            return f"not found: {exc}"

    out = []
    for text in nodes:
        node = parse_node(text)
        if node.type != "datasetField":
            out.append(await read(reader.graph(Walk(node, 2, 2))))
            out.append(await read(reader.graph(Walk(node, 3, 1, as_of_ns=as_of))))
        if node.type != "job":
            out.append(await read(reader.column_lineage(Walk(node, 2, 2))))
    return out


async def graph_nodes(backend: ChdbBackend) -> list[str]:
    """The producer samples' nodes."""
    rows = await backend.query(
        "SELECT DISTINCT n FROM (SELECT Src AS n FROM otel.lineage_edges "
        "UNION ALL SELECT Dst FROM otel.lineage_edges) "
        f"WHERE NOT n LIKE '%:{FILLER}:%' ORDER BY n"
    )
    return [str(r["n"]) for r in rows]


Rows = Callable[[str], Awaitable[list[dict[str, Any]]]]


def projection_checked(rows: Rows) -> Rows:
    """Runs every read by destination after asking ClickHouse's planner whether the
    projection serves it (read from, or used to skip the parts that cannot match: on a
    part of a few marks ClickHouse rightly reads the table itself); counts them."""

    async def run(sql: str) -> list[dict[str, Any]]:
        if "Dst IN" in sql or "startsWith(Dst" in sql:
            plan = "\n".join(r["explain"] for r in await rows(f"EXPLAIN projections = 1 {sql}"))
            assert "ReadFromMergeTree (by_dst)" in plan or "by_dst is usable" in plan, plan
            run.checked += 1  # type: ignore[attr-defined]
        return await rows(sql)

    run.checked = 0  # type: ignore[attr-defined]
    return run


@pytest.fixture
async def before(tmp_path: Path) -> AsyncIterator[ChdbBackend]:
    """A warehouse made with the edge tables of before, holding the producer samples."""
    backend = ChdbBackend(str(tmp_path / "chdb"), database="otel")
    await backend.setup(before_statements())
    samples = producer_samples() + column_chain()
    await store(backend, samples[: len(samples) // 2], "before/0/1")
    await store(backend, samples[len(samples) // 2 :], "before/0/2")
    # Enough other edges that a read by destination off the projection is the cheaper
    # plan (on a few hundred rows ClickHouse rightly reads the table itself).
    await backend.query(
        "INSERT INTO otel.lineage_edges (Src, Dst, Kind, RunId, EventTime, EventHash) "
        f"SELECT concat('job:{FILLER}:j', toString(number)), "
        f"concat('dataset:{FILLER}:d', toString(number % 5000)), 'io', '', "
        "toDateTime64('2026-01-01 00:00:00', 9, 'UTC'), toString(number) FROM numbers(60000)"
    )
    yield backend
    await backend.close()


async def test_readers_answer_alike_after_migrating_a_warehouse_made_before(
    before: ChdbBackend,
) -> None:
    nodes = await graph_nodes(before)
    assert len(nodes) > 40  # every producer's datasets, jobs and fields
    as_of = event_time_ns(later(1).isoformat())
    old = await answers(ReaderBefore(before.query, "otel"), nodes, as_of)
    assert sum(isinstance(a, dict) for a in old) > 100

    await before.setup(LINEAGE_SCHEMA.create("otel", 0))  # the writer starting: migrates

    tables = {
        r["name"]: r["engine"]
        for r in await before.query(
            "SELECT name, engine FROM system.tables WHERE database = 'otel' "
            "AND startsWith(name, 'lineage_edges')"
        )
    }
    assert tables == {"lineage_edges": "ReplacingMergeTree", "lineage_edges_rev": "View"}
    parts = await before.query(
        "SELECT name, projections FROM system.parts "
        "WHERE database = 'otel' AND table = 'lineage_edges' AND active"
    )
    assert len(parts) == 3 and all(p["projections"] == ["by_dst"] for p in parts)

    checked = projection_checked(before.query)
    new = await answers(LineageReader(checked, "otel"), nodes, as_of)
    assert new == old
    assert checked.checked > len(nodes)  # type: ignore[attr-defined]
    # SQL written against the reverse table (the dashboards) reads the same rows.
    through_view = "SELECT * FROM otel.lineage_edges_rev ORDER BY ALL"
    assert await before.query_text(through_view) == await before.query_text(
        "SELECT * FROM otel.lineage_edges ORDER BY ALL"
    )

    # Starting again changes nothing, and the writer writes one table whose projection
    # holds every row, a replayed batch dropped with its part.
    await before.setup(LINEAGE_SCHEMA.create("otel", 0))
    edges = "SELECT count() AS n FROM otel.lineage_edges"
    (earlier,) = await before.query(edges)
    later_events = column_chain()
    await store(before, later_events, "after/0/1")
    await store(before, later_events, "after/0/1")
    projected = await before.query(PROJECTED_EDGES)
    (total,) = await before.query(edges)
    assert int(projected[0]["n"]) == int(total["n"]) == int(earlier["n"]) + 6
