"""Reading the lineage warehouse (the tables of `consumers/warehouse/ddl.py`), for the
gateway's lineage API and `lineage-hub describe`. Stdlib only: it is handed a
function that runs one SQL query and returns its rows (ClickHouse's HTTP or native
protocol, or chdb), so the same reads run against every ClickHouse we have.

Graph walks are breadth-first in the application, one query per hop with a visited
set, each hop a range read on `lineage_edges` sorted the way the hop goes (the table
by source for downstream, its `by_dst` projection by destination for upstream, which
ClickHouse picks for a filter on `Dst`). Nothing scans without bound: depth and node
limits are checked before any query, and an answer cut by the node limit says
`truncated: true`.

Depth counts job hops, as a user reads a lineage graph: upstream depth 1 of a
dataset is the jobs that write it and the datasets those jobs read (two edges).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from lineagehub.lineage_ids import NodeId, dataset_node, field_node, job_node, parse_node
from lineagehub.warehouse_sql import TERMINAL_STATES, quote, runs_select

Rows = Callable[[str], Awaitable[list[dict[str, Any]]]]
Direction = Literal["up", "down"]

MAX_DEPTH = 20
MAX_NODES = 10_000
DEFAULT_NODES = 1_000


class BadParameter(ValueError):
    """A request parameter is wrong; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Walk:
    node: NodeId
    up: int
    down: int
    max_nodes: int = DEFAULT_NODES
    as_of_ns: int | None = None


def check_depth(name: str, value: int) -> int:
    if not 0 <= value <= MAX_DEPTH:
        raise BadParameter(name, f"{name} must be between 0 and {MAX_DEPTH}, got {value}")
    return value


def check_nodes(value: int) -> int:
    if not 1 <= value <= MAX_NODES:
        raise BadParameter("maxNodes", f"maxNodes must be between 1 and {MAX_NODES}, got {value}")
    return value


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote(v) for v in values) + ")"


def _iso(value: Any) -> str | None:
    """ClickHouse's 'YYYY-MM-DD hh:mm:ss.fffffffff' (UTC) as RFC 3339."""
    if value is None or value == "":
        return None
    text = str(value)
    return text.replace(" ", "T", 1) + "Z" if "T" not in text else text


def _ns(value: Any) -> int | None:
    """ClickHouse DateTime64(9) text (UTC) as integer nanoseconds."""
    if value is None or value == "":
        return None
    text = str(value)
    head, _, frac = text.partition(".")
    base = datetime.strptime(head, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(base.timestamp()) * 10**9 + int(frac.ljust(9, "0")[:9] or 0)


def _duration_s(row: dict[str, Any]) -> float | None:
    start, end = _ns(row.get("StartTime")), _ns(row.get("EndTime"))
    if start is None or end is None:
        return None
    return round((end - start) / 1e9, 3)


def _time_literal(ns: int) -> str:
    sec, frac = divmod(ns, 10**9)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"toDateTime64('{text}.{frac:09d}', 9, 'UTC')"


def parse_time(param: str, text: str) -> int:
    """An RFC 3339 time parameter as nanoseconds (no offset: UTC)."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadParameter(param, f"{param} must be an RFC 3339 time, got {text[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1_000_000) * 1000


class LineageReader:
    #: Where hops up and lookups by destination read (the edge table; its projection
    #: sorted by destination serves them).
    by_destination = "lineage_edges"

    def __init__(self, rows: Rows, database: str) -> None:
        self._rows = rows
        self.db = database

    # ---- graph -------------------------------------------------------------------

    def _hop_sql(
        self, frontier: set[str], direction: Direction, kinds: tuple[str, ...], walk: Walk
    ) -> str:
        table, key, other = (
            (self.by_destination, "Dst", "Src")
            if direction == "up"
            else ("lineage_edges", "Src", "Dst")
        )
        where = f"{key} IN {_in_list(sorted(frontier))} AND Kind IN {_in_list(kinds)}"
        if walk.as_of_ns is not None:
            where += f" AND EventTime <= {_time_literal(walk.as_of_ns)}"
        return (
            f"SELECT * FROM (SELECT '{direction}' AS Dir, Src, Dst, "
            f"min(EventTime) AS FirstSeen, max(EventTime) AS LastSeen, "
            # Two runs' edges at one eventTime: the greater run id, whatever the order
            # the rows are read in (the table's or its projection's).
            f"argMax(RunId, (EventTime, RunId)) AS LastRunId, "
            f"groupUniqArray((TransformType, TransformSubtype, TransformDescription, Masking)) "
            f"AS Transformations "
            f"FROM {self.db}.{table} WHERE {where} GROUP BY Src, Dst "
            f"ORDER BY {other}, {key} LIMIT {walk.max_nodes * 4 + 1})"
        )

    async def _walk(
        self, walk: Walk, kinds: tuple[str, ...], hops_per_level: int, starts: set[str]
    ) -> tuple[set[str], dict[tuple[str, str], dict[str, Any]], bool]:
        """Both directions at once: one query per level (a UNION ALL of the up and the
        down hop), so a walk costs `max(up, down)` round trips, not their sum."""
        nodes = set(starts)
        edges: dict[tuple[str, str], dict[str, Any]] = {}
        truncated = False
        depth: dict[Direction, int] = {"up": walk.up, "down": walk.down}
        frontier: dict[Direction, set[str]] = {"up": set(starts), "down": set(starts)}
        seen: dict[Direction, set[str]] = {"up": set(starts), "down": set(starts)}
        for level in range(max(walk.up, walk.down) * hops_per_level):
            parts = [
                self._hop_sql(frontier[d], d, kinds, walk)
                for d in ("up", "down")
                if frontier[d] and level < depth[d] * hops_per_level
            ]
            if not parts or truncated:
                break
            found = await self._rows(" UNION ALL ".join(parts))
            frontier = {"up": set(), "down": set()}
            for edge in found:
                direction: Direction = "up" if edge["Dir"] == "up" else "down"
                nxt = edge["Src"] if direction == "up" else edge["Dst"]
                if nxt not in nodes and len(nodes) >= walk.max_nodes:
                    truncated = True
                    continue
                edges[(edge["Src"], edge["Dst"])] = edge
                nodes.add(nxt)
                if nxt not in seen[direction]:
                    seen[direction].add(nxt)
                    frontier[direction].add(nxt)
        return nodes, edges, truncated

    async def graph(self, walk: Walk) -> dict[str, Any]:
        """The job/dataset graph around a dataset or job (Marquez's `/lineage` shape)."""
        if walk.node.type == "datasetField":
            raise BadParameter("nodeId", "a field's lineage is at /api/v1/column-lineage")
        start = str(walk.node)
        nodes, edges, truncated = await self._walk(walk, ("io", "static"), 2, {start})
        if len(nodes) == 1 and not await self._exists(walk.node):
            raise NotFound(f"the lineage warehouse knows no {start}")
        data = await self._node_data(nodes, walk.as_of_ns)
        return {
            "nodeId": start,
            "depth": {"upstream": walk.up, "downstream": walk.down},
            "asOf": _iso_ns(walk.as_of_ns),
            "truncated": truncated,
            "graph": _graph(nodes, edges, data),
            "edges": [_edge(e) for e in sorted(edges.values(), key=lambda e: (e["Src"], e["Dst"]))],
        }

    async def column_lineage(self, walk: Walk) -> dict[str, Any]:
        """Field-level lineage: from a field, or from every field of a dataset."""
        node = walk.node
        if node.type == "job":
            raise BadParameter("nodeId", "column lineage starts at a dataset or a datasetField")
        if node.type == "datasetField":
            starts = {str(node)}
        else:
            prefix = quote(field_node(node.namespace, node.name, ""))
            fields = await self._rows(
                f"SELECT DISTINCT Dst AS id FROM {self.db}.{self.by_destination} "
                f"WHERE Kind = 'column' AND startsWith(Dst, {prefix}) "
                f"UNION DISTINCT SELECT DISTINCT Src AS id FROM {self.db}.lineage_edges "
                f"WHERE Kind = 'column' AND startsWith(Src, {prefix}) "
                f"LIMIT {walk.max_nodes}"
            )
            starts = {str(r["id"]) for r in fields}
            if not starts:
                raise NotFound(f"the lineage warehouse has no column lineage of {node}")
        nodes, edges, truncated = await self._walk(walk, ("column",), 1, starts)
        if node.type == "datasetField" and not edges:
            raise NotFound(f"the lineage warehouse has no column lineage of {node}")
        graph = []
        for nid in sorted(nodes):
            try:
                parsed = parse_node(nid)
            except ValueError:
                continue
            graph.append(
                {
                    "id": nid,
                    "type": "DATASET_FIELD" if parsed.type == "datasetField" else "DATASET",
                    "data": {
                        "namespace": parsed.namespace,
                        "dataset": parsed.name,
                        "field": parsed.field or None,
                    },
                    "inEdges": [{"origin": s, "destination": d} for (s, d) in edges if d == nid],
                    "outEdges": [{"origin": s, "destination": d} for (s, d) in edges if s == nid],
                }
            )
        return {
            "nodeId": str(node),
            "depth": {"upstream": walk.up, "downstream": walk.down},
            "truncated": truncated,
            "graph": graph,
            "edges": [_edge(e) for e in sorted(edges.values(), key=lambda e: (e["Src"], e["Dst"]))],
        }

    async def _exists(self, node: NodeId) -> bool:
        if node.type == "job":
            sql = (
                f"SELECT 1 FROM {self.db}.lineage_events WHERE "
                f"JobNamespace = {quote(node.namespace)} AND JobName = {quote(node.name)} LIMIT 1"
            )
        else:
            sql = (
                f"SELECT 1 FROM {self.db}.lineage_io WHERE DatasetNamespace = "
                f"{quote(node.namespace)} AND DatasetName = {quote(node.name)} LIMIT 1"
            )
        return bool(await self._rows(sql))

    async def _node_data(self, nodes: set[str], as_of_ns: int | None) -> dict[str, dict[str, Any]]:
        jobs: list[NodeId] = []
        datasets: list[NodeId] = []
        for nid in nodes:
            try:
                parsed = parse_node(nid)
            except ValueError:
                continue
            (jobs if parsed.type == "job" else datasets).append(parsed)
        out: dict[str, dict[str, Any]] = {}
        limit = f" AND EventTime <= {_time_literal(as_of_ns)}" if as_of_ns is not None else ""
        if jobs:
            pairs = ", ".join(f"({quote(j.namespace)}, {quote(j.name)})" for j in jobs)
            # Each job's latest run, its state derived, in one round trip.
            latest = (
                f"SELECT argMax(RunId, (EventTime, RunId)) FROM {self.db}.lineage_events "
                f"WHERE Kind = 'run' AND (JobNamespace, JobName) IN ({pairs}){limit} "
                "GROUP BY JobNamespace, JobName"
            )
            where = f"e.RunId IN ({latest})"
            if as_of_ns is not None:
                where += f" AND e.EventTime <= {_time_literal(as_of_ns)}"
            for j in jobs:
                out[str(j)] = {"namespace": j.namespace, "name": j.name, "latestRun": None}
            for r in await self._rows(runs_select(self.db, where)):
                node = job_node(r["JobNamespace"], r["JobName"])
                if node in out:
                    out[node]["latestRun"] = _run(r)
        if datasets:
            pairs = ", ".join(f"({quote(d.namespace)}, {quote(d.name)})" for d in datasets)
            rows = await self._rows(
                f"SELECT DatasetNamespace, DatasetName, "
                f"argMax(FieldNames, (SchemaHash != '', EventTime, SchemaHash)) AS Fields, "
                f"argMax(FieldTypes, (SchemaHash != '', EventTime, SchemaHash)) AS Types, "
                f"maxIf(EventTime, Direction = 'output') AS LastWritten, "
                f"countIf(Direction = 'output') > 0 AS Written "
                f"FROM {self.db}.lineage_io WHERE (DatasetNamespace, DatasetName) IN ({pairs})"
                f"{limit} GROUP BY DatasetNamespace, DatasetName"
            )
            for d in datasets:
                out[str(d)] = {"namespace": d.namespace, "name": d.name, "fields": []}
            for r in rows:
                out[dataset_node(r["DatasetNamespace"], r["DatasetName"])] = {
                    "namespace": r["DatasetNamespace"],
                    "name": r["DatasetName"],
                    "fields": [
                        {"name": n, "type": t or None}
                        for n, t in zip(r["Fields"], r["Types"], strict=False)
                    ],
                    "lastWritten": _iso(r["LastWritten"]) if int(r["Written"]) else None,
                }
        return out

    # ---- runs, jobs, datasets ----------------------------------------------------

    async def runs_by_id(
        self, run_ids: list[str], as_of_ns: int | None = None
    ) -> dict[str, dict[str, Any]]:
        if not run_ids:
            return {}
        where = f"e.RunId IN {_in_list(run_ids)}"
        if as_of_ns is not None:
            where += f" AND e.EventTime <= {_time_literal(as_of_ns)}"
        rows = await self._rows(runs_select(self.db, where))
        return {r["RunId"]: _run(r) for r in rows}

    async def run_end_ns(self, run_id: str) -> int:
        """A run's end (or its last event) for `asOfRun` time travel."""
        runs = await self._rows(runs_select(self.db, f"e.RunId = {quote(run_id.lower())}"))
        if not runs:
            raise NotFound(f"the lineage warehouse has no run {run_id}")
        end = _ns(runs[0]["EndTime"]) or _ns(runs[0]["LastEventTime"])
        assert end is not None
        return end

    async def job_runs(self, namespace: str, name: str, limit: int) -> dict[str, Any]:
        where = f"e.JobNamespace = {quote(namespace)} AND e.JobName = {quote(name)}"
        rows = await self._rows(
            f"{runs_select(self.db, where)} ORDER BY StartTime DESC LIMIT {int(limit)}"
        )
        if not rows:
            raise NotFound(f"the lineage warehouse has no run of job {namespace}:{name}")
        ids = [r["RunId"] for r in rows]
        counts = await self._rows(
            f"SELECT RunId, Direction, if(count(Rows) = 0, NULL, sum(Rows)) AS Total FROM ("
            f"SELECT RunId, Direction, DatasetNamespace, DatasetName, "
            f"argMax(RowCount, EventTime) AS Rows FROM {self.db}.lineage_io "
            f"WHERE RunId IN {_in_list(ids)} "
            f"GROUP BY RunId, Direction, DatasetNamespace, DatasetName) GROUP BY RunId, Direction"
        )
        traces = await self._trace_ids(rows)
        runs = []
        for r in rows:
            run = _run(r)
            for c in counts:
                if c["RunId"] == r["RunId"] and c["Direction"] in {"input", "output"}:
                    run[f"rows{c['Direction'].title()}"] = (
                        None if c["Total"] is None else int(c["Total"])
                    )
            run["traceId"] = run["traceId"] or traces.get(r["RunId"])
            runs.append(run)
        return {"job": {"namespace": namespace, "name": name}, "runs": runs}

    async def _trace_ids(self, runs: list[dict[str, Any]]) -> dict[str, str]:
        """Trace ids from the spans of PipelineRuns (`pipeline_runs`) for runs whose
        events carried none: a stage run through its parent, a run-level run itself."""
        wanted = {r["RunId"]: (r["ParentRunId"] or r["RunId"]) for r in runs if not r["TraceId"]}
        if not wanted:
            return {}
        try:
            found = await self._rows(
                f"SELECT RunId, any(TraceId) AS TraceId FROM {self.db}.pipeline_runs "
                f"WHERE RunId IN {_in_list(set(wanted.values()))} GROUP BY RunId"
            )
        except Exception:  # no span table in this database: lineage alone
            return {}
        by_run = {f["RunId"]: f["TraceId"] for f in found if f["TraceId"]}
        return {run: by_run[key] for run, key in wanted.items() if key in by_run}

    async def run(self, run_id: str) -> dict[str, Any]:
        """A run: state, times, inputs/outputs with schema and statistics, facets merged
        by latest eventTime per facet name (`_deleted` facets removed), child runs."""
        run_id = run_id.lower()
        rows = await self._rows(runs_select(self.db, f"e.RunId = {quote(run_id)}"))
        if not rows:
            raise NotFound(f"the lineage warehouse has no run {run_id}")
        run = _run(rows[0])
        io = await self._rows(
            f"SELECT Direction, DatasetNamespace, DatasetName, "
            f"argMax(FieldNames, (SchemaHash != '', EventTime, SchemaHash)) AS Fields, "
            f"argMax(FieldTypes, (SchemaHash != '', EventTime, SchemaHash)) AS Types, "
            f"argMax(RowCount, (RowCount IS NOT NULL, EventTime, RowCount)) AS Rows, "
            f"argMax(Bytes, (Bytes IS NOT NULL, EventTime, Bytes)) AS Size "
            f"FROM {self.db}.lineage_io WHERE RunId = {quote(run_id)} "
            f"GROUP BY Direction, DatasetNamespace, DatasetName "
            f"ORDER BY Direction, DatasetNamespace, DatasetName"
        )
        for direction in ("input", "output"):
            run[f"{direction}s"] = [
                {
                    "id": dataset_node(r["DatasetNamespace"], r["DatasetName"]),
                    "namespace": r["DatasetNamespace"],
                    "name": r["DatasetName"],
                    "fields": [
                        {"name": n, "type": t or None}
                        for n, t in zip(r["Fields"], r["Types"], strict=False)
                    ],
                    "rowCount": None if r["Rows"] is None else int(r["Rows"]),
                    "bytes": None if r["Size"] is None else int(r["Size"]),
                }
                for r in io
                if r["Direction"] == direction
            ]
        events = await self._rows(
            f"SELECT EventType, EventTime, Payload FROM {self.db}.lineage_events FINAL "
            f"WHERE RunId = {quote(run_id)} ORDER BY EventTime, EventHash"
        )
        run["facets"] = merge_facets(json.loads(e["Payload"]) for e in events)
        run["events"] = [
            {"eventType": e["EventType"], "eventTime": _iso(e["EventTime"])} for e in events
        ]
        children = await self._rows(runs_select(self.db, f"e.ParentRunId = {quote(run_id)}"))
        run["children"] = sorted((_run(c) for c in children), key=lambda c: c["startTime"] or "")
        traces = await self._trace_ids([rows[0]])
        run["traceId"] = run["traceId"] or traces.get(run_id)
        return run

    async def dataset(self, namespace: str, name: str) -> dict[str, Any]:
        """Schema versions (what changed, by which run), the runs that wrote and read it,
        and freshness (time since its last successful write)."""
        rows = await self._rows(
            f"SELECT Direction, RunId, JobNamespace, JobName, EventType, "
            f"max(EventTime) AS Time, "
            f"argMax(SchemaHash, (SchemaHash != '', EventTime, SchemaHash)) AS LatestSchema, "
            f"argMax(FieldNames, (SchemaHash != '', EventTime, SchemaHash)) AS Fields, "
            f"argMax(FieldTypes, (SchemaHash != '', EventTime, SchemaHash)) AS Types, "
            f"argMax(RowCount, (RowCount IS NOT NULL, EventTime, RowCount)) AS Rows "
            f"FROM {self.db}.lineage_io WHERE DatasetNamespace = {quote(namespace)} "
            f"AND DatasetName = {quote(name)} "
            f"GROUP BY Direction, RunId, JobNamespace, JobName, EventType ORDER BY Time"
        )
        if not rows:
            raise NotFound(f"the lineage warehouse knows no dataset {namespace}:{name}")
        run_ids = sorted({r["RunId"] for r in rows if r["RunId"]})
        states = await self.runs_by_id(run_ids)
        versions: list[dict[str, Any]] = []
        writers: dict[str, dict[str, Any]] = {}
        readers: dict[str, dict[str, Any]] = {}
        for r in rows:
            fields = list(zip(r["Fields"], r["Types"], strict=False))
            if r["LatestSchema"] and (
                not versions or versions[-1]["schemaHash"] != r["LatestSchema"]
            ):
                previous = versions[-1]["fields"] if versions else None
                versions.append(
                    {
                        "schemaHash": r["LatestSchema"],
                        "since": _iso(r["Time"]),
                        "runId": r["RunId"] or None,
                        "job": job_node(r["JobNamespace"], r["JobName"]) if r["JobName"] else None,
                        "fields": [{"name": n, "type": t or None} for n, t in fields],
                        "changes": _schema_changes(previous, fields),
                    }
                )
            target = writers if r["Direction"] == "output" else readers
            if r["RunId"] and r["Direction"] in {"input", "output"}:
                entry = states.get(r["RunId"]) or {"runId": r["RunId"]}
                target[r["RunId"]] = {
                    **entry,
                    "rowCount": None if r["Rows"] is None else int(r["Rows"]),
                }
        last_ok = max(
            (
                parse_time("endTime", w["endTime"])
                for w in writers.values()
                if w.get("state") == "COMPLETE" and w.get("endTime")
            ),
            default=None,
        )
        now = int(datetime.now(UTC).timestamp() * 1e9)
        return {
            "id": dataset_node(namespace, name),
            "namespace": namespace,
            "name": name,
            "fields": versions[-1]["fields"] if versions else [],
            "versions": versions,
            "writtenBy": sorted(writers.values(), key=lambda w: w.get("startTime") or ""),
            "readBy": sorted(readers.values(), key=lambda w: w.get("startTime") or ""),
            "lastSuccessfulWrite": _iso_ns(last_ok),
            "freshnessSeconds": None if last_ok is None else round((now - last_ok) / 1e9, 3),
        }

    async def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        q = quote(query)
        rows = await self._rows(
            f"SELECT 'JOB' AS type, JobNamespace AS namespace, JobName AS name, "
            f"max(EventTime) AS updated FROM {self.db}.lineage_events "
            f"WHERE Kind != 'dataset' AND positionCaseInsensitiveUTF8(JobName, {q}) > 0 "
            f"GROUP BY JobNamespace, JobName "
            f"UNION ALL SELECT 'DATASET' AS type, DatasetNamespace AS namespace, "
            f"DatasetName AS name, max(EventTime) AS updated FROM {self.db}.lineage_io "
            f"WHERE positionCaseInsensitiveUTF8(DatasetName, {q}) > 0 "
            f"GROUP BY DatasetNamespace, DatasetName "
            f"ORDER BY updated DESC, name LIMIT {int(limit)}"
        )
        out = []
        for r in rows:
            make = job_node if r["type"] == "JOB" else dataset_node
            out.append(
                {
                    "type": r["type"],
                    "nodeId": make(r["namespace"], r["name"]),
                    "namespace": r["namespace"],
                    "name": r["name"],
                    "updatedAt": _iso(r["updated"]),
                }
            )
        return out


def _iso_ns(ns: int | None) -> str | None:
    if ns is None:
        return None
    sec, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _run(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "runId": r["RunId"],
        "job": job_node(r["JobNamespace"], r["JobName"]),
        "state": r["State"],
        "terminal": r["State"] in TERMINAL_STATES,
        "startTime": _iso(r["StartTime"]),
        "endTime": _iso(r["EndTime"]),
        "durationSeconds": _duration_s(r),
        "parentRunId": r["ParentRunId"] or None,
        "traceId": r["TraceId"] or None,
        "errorMessage": r["ErrorMessage"] or None,
    }


def _edge(e: dict[str, Any]) -> dict[str, Any]:
    transformations = [
        {"type": t[0], "subtype": t[1] or None, "description": t[2] or None, "masking": bool(t[3])}
        for t in e.get("Transformations") or []
        if t[0]
    ]
    out: dict[str, Any] = {
        "origin": e["Src"],
        "destination": e["Dst"],
        "firstSeen": _iso(e["FirstSeen"]),
        "lastSeen": _iso(e["LastSeen"]),
        "lastRunId": e["LastRunId"] or None,
    }
    if transformations:
        out["transformations"] = sorted(
            transformations, key=lambda t: (t["type"], t["subtype"] or "")
        )
    return out


def _graph(
    nodes: set[str], edges: dict[tuple[str, str], dict[str, Any]], data: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    ins: dict[str, list[dict[str, str]]] = {n: [] for n in nodes}
    outs: dict[str, list[dict[str, str]]] = {n: [] for n in nodes}
    for src, dst in sorted(edges):
        edge = {"origin": src, "destination": dst}
        outs.setdefault(src, []).append(edge)
        ins.setdefault(dst, []).append(edge)
    return [
        {
            "id": n,
            "type": "JOB" if n.startswith("job:") else "DATASET",
            "data": data.get(n, {}),
            "inEdges": ins.get(n, []),
            "outEdges": outs.get(n, []),
        }
        for n in sorted(nodes)
    ]


def _schema_changes(
    previous: list[dict[str, Any]] | None, fields: list[tuple[str, str]]
) -> dict[str, list[Any]] | None:
    if previous is None:
        return None
    before = {f["name"]: f["type"] or "" for f in previous}
    after = dict(fields)
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "typeChanged": [
            {"name": n, "from": before[n] or None, "to": after[n] or None}
            for n in sorted(set(before) & set(after))
            if before[n] != after[n]
        ],
    }


def merge_facets(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Run and job facets merged by latest eventTime per facet name (events in time
    order); a facet `{"_deleted": true}` removes an earlier one."""
    merged: dict[str, dict[str, Any]] = {"run": {}, "job": {}}
    for event in events:
        for part in ("run", "job"):
            facets = (event.get(part) or {}).get("facets") or {}
            if not isinstance(facets, dict):
                continue
            for name, facet in facets.items():
                if isinstance(facet, dict) and facet.get("_deleted") is True:
                    merged[part].pop(name, None)
                else:
                    merged[part][name] = facet
    return merged
