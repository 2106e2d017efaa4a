"""The lineage warehouse: OpenLineage events in ClickHouse, beside the traces.

Every table is written only by appending rows derived from one event, so a batch
can be inserted again with the same `insert_deduplication_token` (redelivery) and
dropped, and an exact duplicate event (same canonical JSON, so the same
`EventHash`) lands on the same sorting key and collapses (ReplacingMergeTree).
Nothing is counted at write time: every derived fact (a run's state, its inputs,
an edge's first and last sighting) is an idempotent aggregate over these rows
(`min`, `max`, `argMax`), so neither a replayed batch nor a duplicate event can
double anything, and arrival order never matters: a run's state is derived from
`EventTime` (see `RUNS_SQL`).

* `lineage_events`: every event as received (`Payload` is its canonical JSON),
  with the columns queries filter on pulled out.
* `lineage_io`: one row per (event, dataset, direction): `input` / `output` of a run
  or of a JobEvent, `declared` for a DatasetEvent; schema, its hash and statistics
  (the dataset's other facets are in the event's `Payload`).
* `lineage_edges`: one row per (event, edge). Node ids are Marquez's:
  `dataset:<ns>:<name>`, `job:<ns>:<name>`, `datasetField:<ns>:<name>:<field>`.
  `Kind` is `io` (job↔dataset), `column` (field→field, or field→dataset for
  indirect dependencies) or `static` (from a JobEvent, tied to no run). Sorted by
  source, so a hop down the graph is a range read; its projection `by_dst` holds the
  columns a hop up reads sorted by destination, so a hop up is one too. ClickHouse
  picks the projection for a filter on `Dst` and keeps it in the same part as the
  rows, so an insert (a replay deduplicated by its token too) writes one block, not
  two tables' (the materialized view and reverse table this replaced cost a second
  insert per batch, about as much as the edges themselves).
* `lineage_edges_rev`: a plain view of `lineage_edges`, kept for SQL written against
  the reverse table (dashboards); a filter on `Dst` through it uses the projection.
* `lineage_runs` (a view): the runs' state, times, parent and root, by eventTime.
"""

from __future__ import annotations

from consumers.otel.ddl import DEDUP_WINDOW, Schema, Table, render_statements
from lineagehub.warehouse_sql import runs_select

_TIME = frozenset({"EventTime"})
_KINDS = {
    "EventTime": "t",
    "FieldNames": "a:s",
    "FieldTypes": "a:s",
    "RowCount": "n64",
    "Bytes": "n64",
    "FileCount": "n64",
    "Masking": "u8",
}

EVENTS = Table(
    "lineage_events",
    (
        "EventHash",
        "Kind",
        "EventType",
        "EventTime",
        "RunId",
        "JobNamespace",
        "JobName",
        "ParentRunId",
        "ParentJobNamespace",
        "ParentJobName",
        "RootRunId",
        "RootJobNamespace",
        "RootJobName",
        "TraceId",
        "Producer",
        "SchemaURL",
        "ErrorMessage",
        "Payload",
    ),
    _TIME,
    _KINDS,
)
IO = Table(
    "lineage_io",
    (
        "EventHash",
        "EventTime",
        "EventType",
        "RunId",
        "JobNamespace",
        "JobName",
        "Direction",
        "DatasetNamespace",
        "DatasetName",
        "SchemaHash",
        "FieldNames",
        "FieldTypes",
        "RowCount",
        "Bytes",
        "FileCount",
    ),
    _TIME,
    _KINDS,
)
_EDGE_COLUMNS = (
    "Src",
    "Dst",
    "Kind",
    "RunId",
    "EventTime",
    "EventHash",
    "JobNamespace",
    "JobName",
    "TransformType",
    "TransformSubtype",
    "TransformDescription",
    "Masking",
)
EDGES = Table("lineage_edges", _EDGE_COLUMNS, _TIME, _KINDS)
#: What the writer inserts.
TABLES = {t.name: t for t in (EVENTS, IO, EDGES)}

_SETTINGS = f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
# A graph hop looks up a few hundred keys: small granules make each a short read. A
# ReplacingMergeTree takes a projection only when told what a merge does with it:
# `rebuild` sorts the merged rows again, so it always holds what the table holds.
_EDGE_SETTINGS = (
    f"{_SETTINGS}, index_granularity = 256, deduplicate_merge_projection_mode = 'rebuild'"
)
# What a hop up (and a column lineage or dashboard lookup by destination) reads.
_BY_DST = (
    "PROJECTION by_dst (SELECT Src, Dst, Kind, RunId, EventTime, TransformType, "
    "TransformSubtype, TransformDescription, Masking ORDER BY (Dst, Kind, Src, RunId))"
)

_EVENTS_SQL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.lineage_events (
    EventHash String CODEC(ZSTD(1)),
    Kind LowCardinality(String),
    EventType LowCardinality(String),
    EventTime DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    RunId String CODEC(ZSTD(1)),
    JobNamespace String CODEC(ZSTD(1)),
    JobName String CODEC(ZSTD(1)),
    ParentRunId String CODEC(ZSTD(1)),
    ParentJobNamespace String CODEC(ZSTD(1)),
    ParentJobName String CODEC(ZSTD(1)),
    RootRunId String CODEC(ZSTD(1)),
    RootJobNamespace String CODEC(ZSTD(1)),
    RootJobName String CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    Producer LowCardinality(String),
    SchemaURL LowCardinality(String),
    ErrorMessage String CODEC(ZSTD(3)),
    Payload String CODEC(ZSTD(3)),
    INDEX idx_run RunId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_parent ParentRunId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(EventTime)
ORDER BY (JobNamespace, JobName, RunId, EventHash)
{{ttl:toDateTime(EventTime)}}
{_SETTINGS}
"""

_IO_SQL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.lineage_io (
    EventHash String CODEC(ZSTD(1)),
    EventTime DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    EventType LowCardinality(String),
    RunId String CODEC(ZSTD(1)),
    JobNamespace String CODEC(ZSTD(1)),
    JobName String CODEC(ZSTD(1)),
    Direction LowCardinality(String),
    DatasetNamespace String CODEC(ZSTD(1)),
    DatasetName String CODEC(ZSTD(1)),
    SchemaHash String CODEC(ZSTD(1)),
    FieldNames Array(String) CODEC(ZSTD(1)),
    FieldTypes Array(String) CODEC(ZSTD(1)),
    RowCount Nullable(Int64),
    Bytes Nullable(Int64),
    FileCount Nullable(Int64),
    INDEX idx_run RunId TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(EventTime)
ORDER BY (DatasetNamespace, DatasetName, Direction, RunId, EventHash)
{{ttl:toDateTime(EventTime)}}
{_SETTINGS}
"""

_EDGES_SQL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.lineage_edges (
    Src String CODEC(ZSTD(1)),
    Dst String CODEC(ZSTD(1)),
    Kind LowCardinality(String),
    RunId String CODEC(ZSTD(1)),
    EventTime DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    EventHash String CODEC(ZSTD(1)),
    JobNamespace String CODEC(ZSTD(1)),
    JobName String CODEC(ZSTD(1)),
    TransformType LowCardinality(String),
    TransformSubtype LowCardinality(String),
    TransformDescription String CODEC(ZSTD(1)),
    Masking UInt8,
    {_BY_DST}
) ENGINE = ReplacingMergeTree
ORDER BY (Src, Kind, Dst, RunId, EventHash, TransformType, TransformSubtype)
{{ttl:toDateTime(EventTime)}}
{_EDGE_SETTINGS}
"""

# A warehouse made before the projection had `lineage_edges_rev` as a table filled by
# `lineage_edges_rev_mv`, holding the same rows as `lineage_edges`. Every statement is
# idempotent and cheap once done, so they run at every start: the view goes first (no
# insert reaches the old copy again), the projection is added and built for the parts
# written before it (a part that has it is skipped), and the old copy becomes a view.
_MIGRATE_SQL = (
    "DROP TABLE IF EXISTS {db}.lineage_edges_rev_mv",
    "ALTER TABLE {db}.lineage_edges MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
    "ALTER TABLE {db}.lineage_edges ADD "
    + _BY_DST.replace("PROJECTION", "PROJECTION IF NOT EXISTS"),
    "ALTER TABLE {db}.lineage_edges MATERIALIZE PROJECTION by_dst",
)

_EDGES_REV_SQL = """
CREATE OR REPLACE VIEW {db}.lineage_edges_rev AS SELECT * FROM {db}.lineage_edges
"""


def _runs_view(db: str) -> str:
    # Replaced at every start: a view holds no data, and one made by an older version
    # would otherwise keep that version's rules.
    return f"CREATE OR REPLACE VIEW {db}.lineage_runs AS {runs_select(db)}"


def create_statements(database: str = "otel", ttl_days: int = 0) -> list[str]:
    """The warehouse's tables and view (idempotent), in the otel database by default so
    one query can join lineage with `otel_traces` and `pipeline_runs`."""
    out = render_statements(
        (_EVENTS_SQL, _IO_SQL, _EDGES_SQL, *_MIGRATE_SQL, _EDGES_REV_SQL), database, ttl_days
    )
    return [*out, _runs_view(out[0].removeprefix("CREATE DATABASE IF NOT EXISTS "))]


LINEAGE_SCHEMA = Schema(TABLES, create_statements)
