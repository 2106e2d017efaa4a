"""One OpenLineage event (a Kafka record's JSON) -> rows of the lineage warehouse tables.

Pure. Takes RunEvents, DatasetEvents and JobEvents as real producers send them:
only what a row needs is required (the event time; the run id and job of a
RunEvent; the job of a JobEvent; the dataset of a DatasetEvent); facets are read
when present and well-formed and otherwise kept only in `Payload`, never a reason
to refuse an event that Marquez would store. What cannot be stored raises
`DecodeError` naming the JSON path, and the consumer dead-letters the record.
"""

from __future__ import annotations

import calendar
import functools
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from consumers.hashing import blake2b_hex
from consumers.otel.decode import DecodeError, Row
from consumers.warehouse.ddl import EDGES, EVENTS, IO
from consumers.warehouse.memo import JsonMemo
from lineagehub.lineage_ids import dataset_node, field_node, job_node
from lineagehub.openlineage_schema import (
    EventKind,
    event_kind,
    loads_exact,
    orjson_reads_exactly,
)

MAX_RECORD_BYTES = 4 * 1024 * 1024
# What Marquez's FlexibleDateTimeDeserializer reads (`lineagehub/openlineage_schema.py`):
# seconds and fraction optional, `T` in any case, offset `Z`, `+HH`, `+HH:MM`, `+HH:MM:SS`.
_TIME = re.compile(
    r"^([+-]?\d{4,10})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{0,9})\d*)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?$"
)
# DateTime64(9) holds 1900-01-01 .. 2262-04-11.
_MIN_NS, _MAX_NS = -2_208_988_800 * 10**9, 9_223_372_036 * 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SURROGATE = re.compile("[\ud800-\udfff]")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def event_time_ns(value: object, path: str = "$.eventTime") -> int:
    """An event time as Marquez reads it, in nanoseconds: ISO 8601 with optional
    seconds and up to nanoseconds; no offset means UTC (naive datetimes from
    openlineage-python mean it); a day past the month's end is its last day and 24:00
    the next midnight (Java's SMART resolution); a number is seconds since the epoch."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > 9e9:  # past what DateTime64 holds
            raise DecodeError("invalid_event", f"{path}: {value!r} is outside 1900..2262")
        ns = int(value * 10**9)
    elif isinstance(value, str):
        ns = _iso_ns(value, path)
    else:
        raise DecodeError("invalid_event", f"{path}: expected a date-time string")
    if not _MIN_NS <= ns < _MAX_NS:
        raise DecodeError("invalid_event", f"{path}: {str(value)[:64]!r} is outside 1900..2262")
    return ns


@functools.lru_cache(maxsize=4096)
def _month(year: int, month: int) -> tuple[int, int]:
    """Seconds from the epoch to the month's first midnight (UTC), and its days."""
    first = datetime(year, month, 1, tzinfo=UTC) - _EPOCH
    return first.days * 86_400, calendar.monthrange(year, month)[1]


def _iso_ns(value: str, path: str) -> int:
    m = _TIME.match(value.strip())
    if m is None:
        raise DecodeError("invalid_event", f"{path}: {value[:64]!r} is not an ISO 8601 date-time")
    g = m.groups()
    year, month, day, hour, minute = int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4])
    if not 1899 <= year <= 2262:
        raise DecodeError("invalid_event", f"{path}: {value[:64]!r} is outside 1900..2262")
    second, frac, zone = int(g[5] or 0), g[6] or "", g[7] or "Z"
    if not 1 <= month <= 12 or not 1 <= day <= 31 or minute > 59 or second > 59:
        raise DecodeError("invalid_event", f"{path}: {value[:64]!r} is not a date-time")
    next_midnight = hour == 24 and minute == second == 0 and not frac.strip("0")
    if hour > 23 and not next_midnight:
        raise DecodeError("invalid_event", f"{path}: hour {hour} is not 00-23")
    start, days = _month(year, month)
    offset = 0
    if zone not in {"Z", "z"}:
        digits = zone[1:].replace(":", "").ljust(6, "0")
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60 + int(digits[4:6]))
    # Integer arithmetic, as the `datetime` it stands for: 24:00 is the next midnight.
    seconds = start + (min(day, days) - 1) * 86_400 + hour * 3600 + minute * 60 + second - offset
    return seconds * 10**9 + (int(frac.ljust(9, "0")) if frac else 0)


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _storable(text: str) -> str:
    """`text` with lone surrogates (valid JSON escapes, not UTF-8) as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _storable_tree(node: Any) -> Any:
    """`node` with every text (keys too) storable. Only an event that orjson refused
    needs it: orjson takes no lone surrogate, so what it parsed is storable as is. The
    event's `Payload` keeps them as sent.

    Walked with a stack, not recursion: an event nested deeper than Python's recursion
    limit (which `json.loads` still takes) must not raise RecursionError here."""
    top: list[Any] = [node]
    todo: list[tuple[Any, Any]] = [(top, 0)]  # (container, key) whose value to convert
    while todo:
        parent, key = todo.pop()
        value = parent[key]
        if isinstance(value, str):
            parent[key] = _storable(value)
        elif isinstance(value, dict):
            copy: dict[str, Any] = {}
            for k, v in value.items():
                copy[_storable(k)] = v
            parent[key] = copy
            todo.extend((copy, k) for k in copy)
        elif isinstance(value, list):
            items = list(value)
            parent[key] = items
            todo.extend((items, i) for i in range(len(items)))
    return top[0]


def _scalar_text(node: object) -> str | None:
    """A scalar as the text Jackson reads into a Java String; None for anything else."""
    if isinstance(node, str):
        return node
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, int | float):
        try:
            return str(node)
        except ValueError:  # an int past Python's digit limit
            return None
    return None


def _text(event: dict[str, Any], *path: str, required: bool = False) -> str:
    node: object = event
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    text = _scalar_text(node)
    if text is None or (required and not text.strip()):
        if required:
            where = "$." + ".".join(path)
            raise DecodeError("invalid_event", f"{where}: required, a non-empty string")
        return ""
    return text


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _fields(schema: object) -> tuple[list[str], list[str]]:
    """A schema facet's field names and types, nested ones flattened to dotted names
    (depth first, each field before its children)."""
    top = _obj(schema).get("fields")
    if not isinstance(top, list):
        return [], []
    names: list[str] = []
    types: list[str] = []
    # Most schemas are flat: one pass; the first nested field hands over to the walk.
    for field in top:
        if not isinstance(field, dict) or not isinstance(name := field.get("name"), str):
            continue
        nested = field.get("fields")
        if nested and isinstance(nested, list):  # producers send `[]` for no children
            return _nested_fields(top)
        kind = field.get("type")
        names.append(name)
        types.append(kind if isinstance(kind, str) else "")
    return names, types


_END = object()


def _nested_fields(top: list[Any]) -> tuple[list[str], list[str]]:
    names: list[str] = []
    types: list[str] = []
    todo: list[tuple[str, Iterator[Any]]] = [("", iter(top))]
    while todo:
        prefix, fields = todo[-1]
        field = next(fields, _END)
        if field is _END:  # not None: a JSON null among the fields is skipped, not an end
            todo.pop()
            continue
        if not isinstance(field, dict) or not isinstance(name := field.get("name"), str):
            continue
        kind = field.get("type")
        names.append(prefix + name)
        types.append(kind if isinstance(kind, str) else "")
        nested = field.get("fields")
        if isinstance(nested, list):
            todo.append((prefix + name + ".", iter(nested)))
    return names, types


def _digest(data: bytes) -> str:
    return blake2b_hex(data, 16)  # keeping the GIL: the event loop runs beside the decoding


def _statistics(dataset: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    facets = (
        _obj(dataset.get("outputFacets")),
        _obj(dataset.get("inputFacets")),
        _obj(dataset.get("facets")),
    )
    rows = size = files = None
    for name in ("outputStatistics", "inputStatistics", "dataQualityMetrics"):
        # The facet as the merge facets, inputFacets, outputFacets (later wins) has it.
        stats = None
        for f in facets:
            if name in f:
                stats = f[name]
                break
        if not isinstance(stats, dict):
            continue
        rows = rows if rows is not None else _count(stats.get("rowCount"))
        size = size if size is not None else _count(stats.get("size", stats.get("bytes")))
        files = files if files is not None else _count(stats.get("fileCount"))
    return rows, size, files


def _trace_id(run_facets: dict[str, Any]) -> str:
    """A W3C trace id carried by any run facet (`traceId` or `traceparent`)."""
    for value in run_facets.values():
        facet = _obj(value)
        trace = facet.get("traceId")
        if isinstance(trace, str) and _TRACE_ID.match(trace.lower()):
            return trace.lower()
        parent = facet.get("traceparent")
        if isinstance(parent, str) and (m := _TRACEPARENT.match(parent.lower())):
            return m.group(1)
    return ""


class _Event:
    """The parts of one event every row repeats."""

    def __init__(self, event: dict[str, Any], canonical: bytes, kind: str) -> None:
        self.kind = kind
        self.canonical = canonical
        self.hash = _digest(canonical)
        self.time = event_time_ns(event.get("eventTime"))
        self.event_type = _text(event, "eventType").upper() if kind == "run" else ""
        if kind == "run" and _scalar_text(_obj(event.get("run")).get("runId")) is None:
            raise DecodeError("invalid_event", "$.run.runId: required, a string")
        self.run_id = _text(event, "run", "runId").lower()  # any string, "" too (Marquez)
        # Marquez takes a blank job name on some events (its rules follow the event
        # type): stored as given, such a job has no node and no edges in the graph.
        if kind != "dataset":
            job = _obj(event.get("job"))
            for part in ("namespace", "name"):
                if _scalar_text(job.get(part)) is None:
                    raise DecodeError("invalid_event", f"$.job.{part}: required, a string")
        self.job_ns = _text(event, "job", "namespace") if kind != "dataset" else ""
        self.job_name = _text(event, "job", "name") if kind != "dataset" else ""
        has_job = self.job_ns.strip() and self.job_name.strip()
        self.job = job_node(self.job_ns, self.job_name) if has_job else ""

    def edge(self, link: Link) -> Row:
        src, dst, kind, transform, subtype, description, masking = link
        return {
            "Src": src,
            "Dst": dst,
            "Kind": kind,
            "RunId": self.run_id,
            "EventTime": self.time,
            "EventHash": self.hash,
            "JobNamespace": self.job_ns,
            "JobName": self.job_name,
            "TransformType": transform,
            "TransformSubtype": subtype,
            "TransformDescription": description,
            "Masking": masking,
        }

    def io_row(self, cells: IoCells) -> Row:
        row: Row = {
            "EventHash": self.hash,
            "EventTime": self.time,
            "EventType": self.event_type,
            "RunId": self.run_id,
            "JobNamespace": self.job_ns,
            "JobName": self.job_name,
        }
        row.update(zip(IO_OWN, cells, strict=True))
        return row


Flat = tuple[tuple[str, ...], tuple[str, ...], str]


class _FlatSchemas(JsonMemo[Flat]):
    """Schema facet JSON -> its field names, types and hash (`memo.JsonMemo`). An entry
    is charged its key, the text of its names and types (a nested field's name repeats
    its parents') and `PER_FIELD` for each field's objects."""

    #: What a field's two strings and their slots cost beyond their text.
    PER_FIELD = 128

    def charge(self, key: bytes, value: Flat) -> int:
        names, types, _ = value
        text = sum(map(len, names)) + sum(map(len, types))
        return len(key) + text + self.PER_FIELD * len(names)


_SCHEMAS = _FlatSchemas()


def _schema(schema: object) -> tuple[list[str], list[str], str]:
    """A schema facet's fields (`_fields`) and their hash ("" for none)."""
    if not isinstance(schema, dict):
        names, types, schema_hash = _flat(schema)
    else:
        names, types, schema_hash = _SCHEMAS.derived(schema, lambda: _flat(schema))
    return list(names), list(types), schema_hash  # new lists: a caller may change its row's


def _flat(schema: object) -> Flat:
    names, types = _fields(schema)
    pairs = list(zip(names, types, strict=True))
    return tuple(names), tuple(types), _digest(orjson.dumps(pairs)) if names else ""


# A `lineage_io` row's own cells, in `IO_OWN` order (the event's columns, `_FROM_EVENT`,
# are added by whoever builds rows): Direction, DatasetNamespace, DatasetName,
# SchemaHash, FieldNames, FieldTypes, RowCount, Bytes, FileCount.
IoCells = tuple[str, str, str, str, list[str], list[str], int | None, int | None, int | None]
#: The columns an io or edge row repeats from its event.
FROM_EVENT = ("EventHash", "EventTime", "EventType", "RunId", "JobNamespace", "JobName")
IO_OWN = tuple(c for c in IO.columns if c not in FROM_EVENT)
assert len(IO_OWN) == 9


def _io_cells(dataset: dict[str, Any], direction: str) -> IoCells:
    names, types, schema_hash = _schema(_obj(dataset.get("facets")).get("schema"))
    rows, size, files = _statistics(dataset)
    return (
        direction,
        dataset["namespace"],
        dataset["name"],
        schema_hash,
        names,
        types,
        rows,
        size,
        files,
    )


# An edge as the rules give it: (Src, Dst, Kind, TransformType, TransformSubtype,
# TransformDescription, Masking); the event's own columns are added by whoever builds rows.
Link = tuple[str, str, str, str, str, str, int]


class _ColumnLinks(JsonMemo[tuple[Link, ...]]):
    """A dataset's namespace, name and column lineage facet, as JSON -> its edges
    (`memo.JsonMemo`). An entry is charged its key, the text of its edges' cells and
    `PER_LINK` for each edge's tuple and strings."""

    #: What an edge's tuple and its strings' objects cost beyond their text.
    PER_LINK = 384

    def charge(self, key: bytes, value: tuple[Link, ...]) -> int:
        text = sum(len(a) + len(b) + len(t) + len(s) + len(d) for a, b, _, t, s, d, _ in value)
        return len(key) + text + self.PER_LINK * len(value)


_LINKS = _ColumnLinks()


def _column_links(dataset: dict[str, Any]) -> tuple[Link, ...]:
    """Field -> field edges of a column lineage facet; indirect ones field -> dataset.
    Derived once per distinct (dataset, facet) (`_LINKS`)."""
    facet = _obj(dataset.get("facets")).get("columnLineage")
    if not isinstance(facet, dict) or not facet:
        return ()
    ns, name = dataset["namespace"], dataset["name"]
    return _LINKS.derived((ns, name, facet), lambda: tuple(_derive_links(ns, name, facet)))


def _derive_links(ns: str, name: str, facet: dict[str, Any]) -> list[Link]:
    targets: list[tuple[str, list[Any], dict[str, Any]]] = []
    for out_field, value in _obj(facet.get("fields")).items():
        spec = _obj(value)
        inputs = spec.get("inputFields")
        if isinstance(inputs, list):
            targets.append((field_node(ns, name, out_field), inputs, spec))
    indirect = facet.get("dataset")
    if isinstance(indirect, list):
        targets.append((dataset_node(ns, name), indirect, {}))
    links: list[Link] = []
    for dst, inputs, spec in targets:
        deprecated: tuple[str, str, str, int] | None = None  # its cells past Kind
        for item in inputs:
            if not isinstance(item, dict):
                continue
            src_ns, src_name, src_field = item.get("namespace"), item.get("name"), item.get("field")
            # Each a non-empty string (`type(...) is str`: JSON gives no str subclass).
            if not (
                type(src_ns) is str
                and src_ns
                and type(src_name) is str
                and src_name
                and type(src_field) is str
                and src_field
            ):
                continue
            src = field_node(src_ns, src_name, src_field)
            given = item.get("transformations")
            before = len(links)
            for t in given if isinstance(given, list) else ():
                if not isinstance(t, dict):
                    continue
                # `_clip` inlined for the usual short strings: a call per cell is most of
                # what an edge costs here.
                ty, sub, desc = t.get("type"), t.get("subtype"), t.get("description")
                if type(ty) is not str or len(ty) > 64:
                    ty = _clip(ty, 64)
                if type(sub) is not str or len(sub) > 64:
                    sub = _clip(sub, 64)
                if type(desc) is not str or len(desc) > 2000:
                    desc = _clip(desc, 2000)
                links.append(
                    (src, dst, "column", ty, sub, desc, 1 if t.get("masking") is True else 0)
                )
            if len(links) == before:  # no transformation: the deprecated per-field form
                if deprecated is None:
                    deprecated = (
                        _clip(spec.get("transformationType"), 64),
                        "",
                        _clip(spec.get("transformationDescription"), 2000),
                        0,
                    )
                links.append((src, dst, "column", *deprecated))
    return links


def _clip(value: object, limit: int) -> str:
    """`str(value or "")[:limit]`, without the copy for a short string."""
    if type(value) is str and len(value) <= limit:
        return value
    return str(value or "")[:limit]


def _datasets(event: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = event.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DecodeError("invalid_event", f"$.{key}: expected an array")
    return [_dataset(entry, key, i) for i, entry in enumerate(value)]


def _dataset(entry: object, key: str, index: int | None = None) -> dict[str, Any]:
    """A dataset object with its namespace and name as text (a copy when one was not);
    `$.<key>[<index>]` is its JSON path."""
    if not isinstance(entry, dict):
        raise DecodeError("invalid_event", f"{_where(key, index)}: expected an object")
    namespace, name = entry.get("namespace"), entry.get("name")
    if type(namespace) is str and type(name) is str:  # as almost every producer sends them
        return entry
    item = dict(entry)
    for part in ("namespace", "name"):
        text = _scalar_text(item.get(part))
        if text is None:
            raise DecodeError("invalid_event", f"{_where(key, index)}.{part}: required, a string")
        item[part] = text
    return item


def _where(key: str, index: int | None) -> str:
    return f"$.{key}" if index is None else f"$.{key}[{index}]"


def _parse(value: bytes | None) -> tuple[dict[str, Any], bool]:
    """The event, and whether orjson parsed it (then every text in it is storable)."""
    if value is None:
        raise DecodeError("empty_record", "the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        raise DecodeError("too_large", f"{len(value)} bytes, the limit is {MAX_RECORD_BYTES}")
    event: Any = None
    fast = orjson_reads_exactly(value)
    if fast:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            fast = False
    if not fast:
        # orjson refuses lone surrogates and reads integers past 64 bits as floats, where
        # Marquez (Jackson) stores them as sent: parse those (rare) events the slow way;
        # what neither takes is not JSON. NaN and Infinity, which Python's parser takes
        # and Jackson refuses, are not JSON.
        event, why = loads_exact(value)
        if why is not None:
            raise DecodeError("invalid_json", why[:300]) from None
    if not isinstance(event, dict):
        raise DecodeError("invalid_event", f"$: expected an object, got {type(event).__name__}")
    return event, fast


def _canonical(event: dict[str, Any]) -> bytes:
    """The event's JSON with sorted keys: exact duplicates have the same bytes."""
    try:
        return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        try:
            # ASCII escapes: a lone surrogate (which Marquez's parser takes) stays as sent.
            text = json.dumps(event, sort_keys=True, separators=(",", ":"))
            return text.encode("ascii")
        except (ValueError, RecursionError) as exc:  # lone surrogates, ints past 4300 digits
            raise DecodeError("invalid_json", str(exc)[:300]) from None


_KINDS = {EventKind.RUN: "run", EventKind.DATASET: "dataset", EventKind.JOB: "job"}


def _kind(event: dict[str, Any]) -> str:
    """As Marquez decides (by `schemaURL`, `lineagehub.openlineage_schema.event_kind`)."""
    return _KINDS[event_kind(event)]


def read_event(value: bytes | None) -> tuple[dict[str, Any], _Event]:
    """The event (every text in it storable) and what each of its rows repeats; raises
    `DecodeError` for what cannot be stored."""
    event, storable = _parse(value)
    kind = _kind(event)
    canonical = _canonical(event)
    if not storable:
        event = _storable_tree(event)
    return event, _Event(event, canonical, kind)


def io_and_links(event: dict[str, Any], ev: _Event) -> tuple[list[IoCells], list[Link]]:
    """The event's `lineage_io` rows (their own cells, `_Event.io_row` makes the row) and
    its edges."""
    io: list[IoCells] = []
    links: list[Link] = []
    if ev.kind == "dataset":
        dataset = _dataset(event.get("dataset"), "dataset")
        io.append(_io_cells(dataset, "declared"))
        links.extend(_column_links(dataset))
        return io, links
    edge_kind = "io" if ev.kind == "run" else "static"
    for dataset in _datasets(event, "inputs"):
        io.append(_io_cells(dataset, "input"))
        if ev.job:
            node = dataset_node(dataset["namespace"], dataset["name"])
            links.append((node, ev.job, edge_kind, "", "", "", 0))
    for dataset in _datasets(event, "outputs"):
        io.append(_io_cells(dataset, "output"))
        if ev.job:
            node = dataset_node(dataset["namespace"], dataset["name"])
            links.append((ev.job, node, edge_kind, "", "", "", 0))
        links.extend(_column_links(dataset))
    return io, links


#: The `lineage_events` columns `event_cells` gives, in order: all but `Payload` (the
#: event's canonical JSON, `_Event.canonical`), which the batch path keeps as bytes.
EVENT_CELLS = EVENTS.columns[:-1]
assert EVENTS.columns[-1] == "Payload"


def event_cells(event: dict[str, Any], ev: _Event) -> tuple[Any, ...]:
    """The event's `lineage_events` row but its `Payload`, in `EVENT_CELLS` order."""
    run_facets = _obj(_obj(event.get("run")).get("facets"))
    parent = _obj(run_facets.get("parent"))
    root = _obj(parent.get("root"))
    error = _obj(run_facets.get("errorMessage")).get("message")
    return (
        ev.hash,
        ev.kind,
        ev.event_type,
        ev.time,
        ev.run_id,
        ev.job_ns,
        ev.job_name,
        _text(parent, "run", "runId").lower(),
        _text(parent, "job", "namespace"),
        _text(parent, "job", "name"),
        _text(root, "run", "runId").lower(),
        _text(root, "job", "namespace"),
        _text(root, "job", "name"),
        _trace_id(run_facets),
        _text(event, "producer")[:512],
        _text(event, "schemaURL")[:512],
        error[:4000] if isinstance(error, str) else "",
    )


def event_row(event: dict[str, Any], ev: _Event) -> Row:
    """The event's `lineage_events` row."""
    row = dict(zip(EVENT_CELLS, event_cells(event, ev), strict=True))
    row["Payload"] = ev.canonical.decode("utf-8")  # ASCII or UTF-8 from orjson
    return row


def decode_lineage(value: bytes | None) -> dict[str, list[Row]]:
    """The rows of every warehouse table for one event, as dicts (the reference the
    batch path, `warehouse/batch.py`, is tested against; tests and tools use it)."""
    event, ev = read_event(value)
    io, links = io_and_links(event, ev)
    return {
        EVENTS.name: [event_row(event, ev)],
        IO.name: [ev.io_row(cells) for cells in io],
        EDGES.name: [ev.edge(link) for link in links],
    }
