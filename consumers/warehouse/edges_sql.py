"""`lineage_edges` rows computed by ClickHouse from an event's canonical JSON.

The writer inserts each event once, into `lineage_ingest` (a Null table: it keeps
nothing); materialized views fill `lineage_events` with its columns and
`lineage_edges` with the rows below, parsed in C++ (simdjson) instead of Python. The
SQL follows `decode.io_and_links` rule for rule, for the events Python marks
`SqlEdges = 1`: parsed by orjson (so `Payload` is orjson's canonical JSON, valid
UTF-8), every dataset's namespace and name a JSON string, and no transformation
field (`type`, `subtype`, `description` and the deprecated `transformationType`,
`transformationDescription`) holding anything but a string or null (`sql_edges_ok`).
Python stores every other event's edges itself, the old way, so a value SQL would
render differently from Python's `str()` (a float, `True`) never reaches SQL.

Rules, as in `decode.py`:
* a run (`io`) or job (`static`) event with a job node: input dataset -> job and
  job -> output dataset;
* column lineage of each output (of a DatasetEvent: of its dataset): for each output
  field whose spec has an `inputFields` array (and for the facet's `dataset` array:
  the dataset itself, indirect), each input that is an object with non-empty string
  namespace, name and field gives one edge per transformation that is an object, or
  one from the deprecated per-field `transformationType` / `transformationDescription`
  when it has none; type and subtype cut to 64 characters, description to 2,000;
  masking only when it is JSON `true`.

The view's name carries a version: a change to these rules is a new view (created
beside the old one, which the migration then drops), never a view replaced in place
while a writer inserts.
"""

from __future__ import annotations

import re

# A transformation field holding a number, boolean, object or array: Python's `str()`
# of it is not what SQL can write. Found in the canonical JSON (compact: a key is
# always followed directly by `:` and its value) by the keys' endings, `pe` and
# `ption`, which a regular expression scans 5x faster than the five names; each match
# (a `jobType` facet, a schema field's numeric `type`) is then checked for the whole
# name. A match elsewhere in the event only sends that event down the Python path.
_CANDIDATE = re.compile(rb'(?:pe|ption)":[^"n]')
_KEYS = (
    b'"type',
    b'"subtype',
    b'"transformationType',
    b'"description',
    b'"transformationDescription',
)


def sql_edges_ok(canonical: bytes) -> bool:
    """Whether the edges view computes this event's edges exactly as Python does (the
    caller has checked the rest: orjson parsed it, its datasets' names are strings)."""
    for match in _CANDIDATE.finditer(canonical):
        key_end = match.end() - 3  # the key's closing quote
        if canonical.endswith(_KEYS, 0, key_end):
            return False
    return True


# An input field's node, and a transformation's columns, as `decode._column_links`.
_FIELD = (
    "concat('datasetField:', JSONExtractString(item, 'namespace'), ':', "
    "JSONExtractString(item, 'name'), ':', JSONExtractString(item, 'field'))"
)
_INPUT_OK = " AND ".join(
    f"JSONType(item, '{key}') = 'String' AND JSONExtractString(item, '{key}') != ''"
    for key in ("namespace", "name", "field")
)
_OBJECTS = "arrayFilter(t -> JSONType(t) = 'Object', JSONExtractArrayRaw(item, 'transformations'))"
_GIVEN = (
    "arrayMap(t -> (JSONExtractString(t, 'type'), JSONExtractString(t, 'subtype'), "
    "JSONExtractString(t, 'description'), "
    "toUInt8(JSONType(t, 'masking') = 'Bool' AND JSONExtractBool(t, 'masking'))), "
    f"{_OBJECTS})"
)
_DEPRECATED = (
    "[(JSONExtractString(target.3, 'transformationType'), '', "
    "JSONExtractString(target.3, 'transformationDescription'), toUInt8(0))]"
)
# target: (destination node, the inputs array's JSON, the field's spec JSON)
_TARGET_LINKS = (
    "arrayFlatten(arrayMap(item -> arrayMap(t -> "
    f"({_FIELD}, target.1, 'column', substringUTF8(t.1, 1, 64), substringUTF8(t.2, 1, 64), "
    "substringUTF8(t.3, 1, 2000), t.4), "
    f"if(empty({_OBJECTS}), {_DEPRECATED}, {_GIVEN})), "
    f"arrayFilter(item -> JSONType(item) = 'Object' AND {_INPUT_OK}, "
    "JSONExtractArrayRaw(target.2))))"
)
# o: (namespace, name, columnLineage facet JSON) of one output
_TARGETS = (
    "arrayConcat("
    "arrayMap(kv -> (concat('datasetField:', o.1, ':', o.2, ':', kv.1), "
    "JSONExtractRaw(kv.2, 'inputFields'), kv.2), "
    "arrayFilter(kv -> JSONType(kv.2, 'inputFields') = 'Array', "
    "JSONExtractKeysAndValuesRaw(o.3, 'fields'))), "
    "if(JSONType(o.3, 'dataset') = 'Array', "
    "[(concat('dataset:', o.1, ':', o.2), JSONExtractRaw(o.3, 'dataset'), '{}')], []))"
)
_COLUMN_LINKS = (
    f"arrayFlatten(arrayMap(o -> arrayFlatten(arrayMap(target -> {_TARGET_LINKS}, {_TARGETS})), "
    "outs))"
)
_DATASET = (
    "concat('dataset:', JSONExtractString(d, 'namespace'), ':', JSONExtractString(d, 'name'))"
)
_IO_LINKS = (
    "if(JobNode = '', [], arrayConcat("
    f"arrayMap(d -> ({_DATASET}, JobNode, edge_kind, '', '', '', toUInt8(0)), ins), "
    f"arrayMap(d -> (JobNode, {_DATASET}, edge_kind, '', '', '', toUInt8(0)), "
    "if(Kind = 'dataset', [], outs_raw))))"
)

EDGES_VIEW = "lineage_ingest_edges_v1"

EDGES_VIEW_SQL = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{EDGES_VIEW} TO {{db}}.lineage_edges AS
SELECT
    link.1 AS Src, link.2 AS Dst, link.3 AS Kind, RunId, EventTime, EventHash,
    JobNamespace, JobName, link.4 AS TransformType, link.5 AS TransformSubtype,
    link.6 AS TransformDescription, link.7 AS Masking
FROM (
    SELECT
        RunId, EventTime, EventHash, JobNamespace, JobName, JobNode, Kind,
        if(Kind = 'run', 'io', 'static') AS edge_kind,
        if(Kind = 'dataset', [], JSONExtractArrayRaw(Payload, 'inputs')) AS ins,
        if(Kind = 'dataset', [JSONExtractRaw(Payload, 'dataset')],
            JSONExtractArrayRaw(Payload, 'outputs')) AS outs_raw,
        arrayMap(d -> (JSONExtractString(d, 'namespace'), JSONExtractString(d, 'name'),
            JSONExtractRaw(d, 'facets', 'columnLineage')), outs_raw) AS outs,
        arrayConcat({_IO_LINKS}, {_COLUMN_LINKS}) AS links
    FROM {{db}}.lineage_ingest
    WHERE SqlEdges = 1
)
ARRAY JOIN links AS link
"""
