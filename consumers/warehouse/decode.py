"""One OpenLineage event (a Kafka record's JSON) -> rows of the lineage warehouse tables.

Pure. Takes RunEvents, DatasetEvents and JobEvents as real producers send them:
only what a row needs is required (the event time; the run id and job of a
RunEvent; the job of a JobEvent; the dataset of a DatasetEvent); facets are read
when present and well-formed and otherwise kept only in `Payload`, never a reason
to refuse an event that Marquez would store. What cannot be stored raises
`DecodeError` naming the JSON path, and the consumer dead-letters the record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from consumers.otel.decode import DecodeError, Row
from consumers.warehouse.ddl import EDGES, EVENTS, IO
from lineagehub.lineage_ids import dataset_node, field_node, job_node

MAX_RECORD_BYTES = 4 * 1024 * 1024
_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
# DateTime64(9) holds 1900-01-01 .. 2262-04-11.
_MIN_NS, _MAX_NS = -2_208_988_800 * 10**9, 9_223_372_036 * 10**9
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def event_time_ns(value: object, path: str = "$.eventTime") -> int:
    """RFC 3339 / ISO 8601 with up to nanoseconds; no offset means UTC (as naive
    datetimes from openlineage-python are meant)."""
    if not isinstance(value, str):
        raise DecodeError("invalid_event", f"{path}: expected a date-time string")
    m = _TIME.match(value.strip())
    if m is None:
        raise DecodeError("invalid_event", f"{path}: {value[:64]!r} is not an ISO 8601 date-time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8) or "Z"
    try:
        base = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError as exc:
        raise DecodeError("invalid_event", f"{path}: {exc}") from None
    offset = 0
    if zone not in {"Z", "z"}:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    seconds = int((base - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) - offset
    ns = seconds * 10**9 + int(frac.ljust(9, "0"))
    if not _MIN_NS <= ns < _MAX_NS:
        raise DecodeError("invalid_event", f"{path}: {value[:64]!r} is outside 1900..2262")
    return ns


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(event: dict[str, Any], *path: str, required: bool = False) -> str:
    node: object = event
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, str) and (node or not required):
        return node
    if required or node is not None:
        where = "$." + ".".join(path)
        if required:
            raise DecodeError("invalid_event", f"{where}: required, a non-empty string")
    return ""


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _fields(schema: object, prefix: str = "") -> Iterator[tuple[str, str]]:
    """A schema facet's fields, nested ones flattened to dotted names."""
    for field in _obj(schema).get("fields") or []:
        if not isinstance(field, dict) or not isinstance(field.get("name"), str):
            continue
        name = prefix + field["name"]
        kind = field.get("type")
        yield name, kind if isinstance(kind, str) else ""
        if isinstance(field.get("fields"), list):
            yield from _fields(field, name + ".")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _statistics(dataset: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    facets = {
        **_obj(dataset.get("facets")),
        **_obj(dataset.get("inputFacets")),
        **_obj(dataset.get("outputFacets")),
    }
    rows = size = files = None
    for name in ("outputStatistics", "inputStatistics", "dataQualityMetrics"):
        stats = _obj(facets.get(name))
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
        self.hash = _digest(canonical)
        self.time = event_time_ns(event.get("eventTime"))
        self.event_type = _text(event, "eventType").upper() if kind == "run" else ""
        self.run_id = _text(event, "run", "runId", required=kind == "run").lower()
        if kind == "dataset":
            self.job_ns = self.job_name = ""
        else:
            self.job_ns = _text(event, "job", "namespace", required=True)
            self.job_name = _text(event, "job", "name", required=True)
        self.job = job_node(self.job_ns, self.job_name) if self.job_name else ""

    def edge(self, src: str, dst: str, kind: str) -> Row:
        return {
            "Src": src,
            "Dst": dst,
            "Kind": kind,
            "RunId": self.run_id,
            "EventTime": self.time,
            "EventHash": self.hash,
            "JobNamespace": self.job_ns,
            "JobName": self.job_name,
            "TransformType": "",
            "TransformSubtype": "",
            "TransformDescription": "",
            "Masking": 0,
        }


def _io_row(ev: _Event, dataset: dict[str, Any], direction: str) -> Row:
    fields = list(_fields(_obj(dataset.get("facets")).get("schema")))
    names = [n for n, _ in fields]
    types = [t for _, t in fields]
    schema_hash = _digest(orjson.dumps(fields)) if fields else ""
    rows, size, files = _statistics(dataset)
    return {
        "EventHash": ev.hash,
        "EventTime": ev.time,
        "EventType": ev.event_type,
        "RunId": ev.run_id,
        "JobNamespace": ev.job_ns,
        "JobName": ev.job_name,
        "Direction": direction,
        "DatasetNamespace": dataset["namespace"],
        "DatasetName": dataset["name"],
        "SchemaHash": schema_hash,
        "FieldNames": names,
        "FieldTypes": types,
        "RowCount": rows,
        "Bytes": size,
        "FileCount": files,
    }


def _column_edges(ev: _Event, dataset: dict[str, Any]) -> Iterator[Row]:
    """Field -> field edges of a column lineage facet; indirect ones field -> dataset."""
    facet = _obj(_obj(dataset.get("facets")).get("columnLineage"))
    ns, name = dataset["namespace"], dataset["name"]
    targets: list[tuple[str, list[Any], dict[str, Any]]] = []
    for out_field, value in _obj(facet.get("fields")).items():
        spec = _obj(value)
        inputs = spec.get("inputFields")
        if isinstance(inputs, list):
            targets.append((field_node(ns, name, out_field), inputs, spec))
    indirect = facet.get("dataset")
    if isinstance(indirect, list):
        targets.append((dataset_node(ns, name), indirect, {}))
    for dst, inputs, spec in targets:
        for entry in inputs:
            item = _obj(entry)
            src_ns, src_name, src_field = (item.get(k) for k in ("namespace", "name", "field"))
            if not all(isinstance(v, str) and v for v in (src_ns, src_name, src_field)):
                continue
            src = field_node(str(src_ns), str(src_name), str(src_field))
            transformations = [t for t in item.get("transformations") or [] if isinstance(t, dict)]
            if not transformations:  # the deprecated per-field form
                transformations = [
                    {
                        "type": spec.get("transformationType") or "",
                        "description": spec.get("transformationDescription") or "",
                    }
                ]
            for t in transformations:
                row = ev.edge(src, dst, "column")
                row["TransformType"] = str(t.get("type") or "")[:64]
                row["TransformSubtype"] = str(t.get("subtype") or "")[:64]
                row["TransformDescription"] = str(t.get("description") or "")[:2000]
                row["Masking"] = 1 if t.get("masking") is True else 0
                yield row


def _datasets(event: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = event.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DecodeError("invalid_event", f"$.{key}: expected an array")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise DecodeError("invalid_event", f"$.{key}[{i}]: expected an object")
        for part in ("namespace", "name"):
            if not isinstance(item.get(part), str) or not item[part]:
                raise DecodeError(
                    "invalid_event", f"$.{key}[{i}].{part}: required, a non-empty string"
                )
        out.append(item)
    return out


def _parse(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise DecodeError("empty_record", "the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        raise DecodeError("too_large", f"{len(value)} bytes, the limit is {MAX_RECORD_BYTES}")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        # orjson refuses integers past 64 bits, which Marquez (Jackson) stores: parse
        # those (rare) events the slow way; what neither takes is not JSON.
        try:
            event = json.loads(value)
        except (ValueError, RecursionError) as exc:  # ValueError covers UnicodeDecodeError
            raise DecodeError("invalid_json", str(exc)[:300]) from None
    if not isinstance(event, dict):
        raise DecodeError("invalid_event", f"$: expected an object, got {type(event).__name__}")
    return event


def _kind(event: dict[str, Any]) -> str:
    if "run" in event:
        return "run"
    if "dataset" in event:
        return "dataset"
    if "job" in event:
        return "job"
    raise DecodeError("invalid_event", "$: none of run, job or dataset: not an OpenLineage event")


def decode_lineage(value: bytes | None) -> dict[str, list[Row]]:
    """The rows of every warehouse table for one event."""
    event = _parse(value)
    kind = _kind(event)
    try:
        canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        try:
            text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            canonical = text.encode("utf-8")
        except (ValueError, RecursionError) as exc:  # lone surrogates, ints past 4300 digits
            raise DecodeError("invalid_json", str(exc)[:300]) from None
    ev = _Event(event, canonical, kind)
    run_facets = _obj(_obj(event.get("run")).get("facets"))
    parent = _obj(run_facets.get("parent"))
    root = _obj(parent.get("root"))
    error = _obj(run_facets.get("errorMessage")).get("message")
    io: list[Row] = []
    edges: list[Row] = []
    if kind == "dataset":
        dataset = _datasets({"d": [event.get("dataset")]}, "d")[0]
        io.append(_io_row(ev, dataset, "declared"))
        edges.extend(_column_edges(ev, dataset))
    else:
        edge_kind = "io" if kind == "run" else "static"
        for dataset in _datasets(event, "inputs"):
            io.append(_io_row(ev, dataset, "input"))
            node = dataset_node(dataset["namespace"], dataset["name"])
            edges.append(ev.edge(node, ev.job, edge_kind))
        for dataset in _datasets(event, "outputs"):
            io.append(_io_row(ev, dataset, "output"))
            node = dataset_node(dataset["namespace"], dataset["name"])
            edges.append(ev.edge(ev.job, node, edge_kind))
            edges.extend(_column_edges(ev, dataset))
    row = {
        "EventHash": ev.hash,
        "Kind": kind,
        "EventType": ev.event_type,
        "EventTime": ev.time,
        "RunId": ev.run_id,
        "JobNamespace": ev.job_ns,
        "JobName": ev.job_name,
        "ParentRunId": _text(parent, "run", "runId").lower(),
        "ParentJobNamespace": _text(parent, "job", "namespace"),
        "ParentJobName": _text(parent, "job", "name"),
        "RootRunId": _text(root, "run", "runId").lower(),
        "RootJobNamespace": _text(root, "job", "namespace"),
        "RootJobName": _text(root, "job", "name"),
        "TraceId": _trace_id(run_facets),
        "Producer": _text(event, "producer")[:512],
        "SchemaURL": _text(event, "schemaURL")[:512],
        "ErrorMessage": error[:4000] if isinstance(error, str) else "",
        "Payload": canonical.decode("utf-8"),
    }
    return {EVENTS.name: [row], IO.name: io, EDGES.name: edges}
