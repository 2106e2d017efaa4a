"""`lineage-hub describe RUN`: a PipelineRun as people want to see it in a terminal.

The stage timeline (a Gantt of the run's spans from Jaeger), the lineage as the
lineage warehouse recorded it (the stage runs and their states, the graph around
the sink, each output column's origin with its transformation), and the quality
verdicts. Reads the run through the Kubernetes API, its trace from Jaeger's query
API and its lineage from ClickHouse's HTTP interface (`CLICKHOUSE_HTTP_URL`); with no
warehouse it derives the column lineage from the transform spec as the runner does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

import httpx

from lineagehub.api.pipelinerun import API_GROUP, API_VERSION, PLURAL, PipelineRun, StageName
from lineagehub.datasets import dataset_of
from pipeline_runner.column_lineage import column_lineage

Span = dict[str, Any]


def _fetch_run(name: str, namespace: str) -> dict[str, Any]:
    # Imported here: stage Jobs import this package and need no Kubernetes client.
    from kubernetes import client, config

    config.load_kube_config()  # type: ignore[no-untyped-call]
    obj = client.CustomObjectsApi().get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, name
    )
    body: dict[str, Any] = obj  # type: ignore[assignment]
    return body


def _fetch_spans(jaeger: str, trace_id: str) -> list[Span]:
    try:
        reply = httpx.get(f"{jaeger.rstrip('/')}/api/traces/{trace_id}", timeout=10)
    except httpx.HTTPError:
        return []
    if reply.status_code != 200:
        return []
    return [s for t in reply.json().get("data") or [] for s in t.get("spans") or []]


def gantt(spans: list[Span], width: int) -> list[str]:
    """One line per span, children under their parent, bars on a shared time axis."""
    if not spans:
        return ["  (no spans found in Jaeger)"]
    start = min(s["startTime"] for s in spans)
    end = max(s["startTime"] + s["duration"] for s in spans)
    total = max(end - start, 1)
    children: dict[str, list[Span]] = {}
    ids = {s["spanID"] for s in spans}
    roots = []
    for span in sorted(spans, key=lambda s: s["startTime"]):
        parent = next(
            (r["spanID"] for r in span.get("references") or [] if r.get("refType") == "CHILD_OF"),
            None,
        )
        if parent in ids:
            children.setdefault(parent, []).append(span)  # type: ignore[arg-type]
        else:
            roots.append(span)
    label_width = 28
    bar_width = max(10, width - label_width - 12)
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        failed = any(t.get("key") == "error" and t.get("value") for t in span.get("tags") or [])
        offset = round((span["startTime"] - start) / total * bar_width)
        length = max(1, round(span["duration"] / total * bar_width))
        bar = " " * offset + ("x" if failed else "█") * min(length, bar_width - offset)
        label = ("  " * depth + span["operationName"])[:label_width]
        lines.append(f"  {label:<{label_width}}|{bar:<{bar_width}}| {span['duration'] / 1e6:6.2f}s")
        for child in children.get(span["spanID"], []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return lines


def lineage_lines(run: PipelineRun) -> list[str]:
    """Datasets through the stages, then where each output column comes from."""
    src, sink = dataset_of(run.spec.source.uri), dataset_of(run.spec.sink.uri)
    lines = [
        f"  {src[0]}:{src[1]}",
        "    -> extract -> transform -> load ->",
        f"  {sink[0]}:{sink[1]}",
    ]
    status = run.status
    extract = status.stage(StageName.EXTRACT) if status else None
    inputs = list(extract.columns or []) if extract else []
    if not inputs:
        return [*lines, "", "  (column lineage appears once extract has reported its columns)"]
    mapping = column_lineage(run.spec.transform, inputs)
    lines.append("")
    for column, origin in mapping.fields.items():
        sources = ", ".join(origin.inputs) or "(constant)"
        detail = f": {origin.expression}" if origin.expression else ""
        lines.append(f"  {column:<20} <- {sources:<24} {origin.transformation.value}{detail}")
    for step, columns in mapping.indirect.items():
        lines.append(f"  rows selected by {step} on {', '.join(columns)}")
    return lines


def warehouse_lines(run: PipelineRun, url: str) -> list[str] | None:
    """The run's lineage as the warehouse holds it; None when it holds nothing yet."""
    import asyncio

    from lineagehub.clickhouse_http import QueryFailed, query_rows
    from lineagehub.lineage_ids import NodeId
    from lineagehub.warehouse_reader import LineageReader, NotFound, Walk

    status = run.status
    if status is None or not status.run_id:
        return None

    async def rows(sql: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(query_rows, url, sql)

    reader = LineageReader(rows, "otel")
    ns, name = dataset_of(run.spec.sink.uri)

    async def read() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
        found = await reader.run(status.run_id or "")
        stages = [await reader.run(child["runId"]) for child in found["children"]]
        try:
            # Sink <- load <- transform <- extract <- source: three field hops.
            columns = await reader.column_lineage(Walk(NodeId("dataset", ns, name), 3, 0))
        except NotFound:
            columns = None
        return found, stages, columns

    try:
        found, stages, columns = asyncio.run(read())
    except (NotFound, QueryFailed):
        return None
    lines = [f"  run {found['runId']} {found['state']} ({found['job']})"]
    for child in found["children"]:
        took = "" if child["durationSeconds"] is None else f"{child['durationSeconds']:.2f}s"
        lines.append(f"    {child['job']:<44} {child['state']:<9} {took}")
    for stage in stages:
        ins = ", ".join(f"{d['namespace']}:{d['name']}" for d in stage["inputs"]) or "-"
        outs = (
            ", ".join(
                f"{d['namespace']}:{d['name']}"
                + ("" if d["rowCount"] is None else f" ({d['rowCount']} rows)")
                for d in stage["outputs"]
            )
            or "-"
        )
        lines.append(f"  {ins}\n    -> {stage['job']} ->\n  {outs}")
    if columns is not None:
        lines.append("")
        lines += column_origins(columns["edges"], f"datasetField:{ns}:{name}:")
    return lines


def column_origins(edges: list[dict[str, Any]], sink_prefix: str) -> list[str]:
    """For each field of the sink, the fields it comes from at the far end of the
    column graph (the source), with every transformation on the way that is not a
    plain copy."""
    into: dict[str, list[dict[str, Any]]] = {}
    for edge in edges:
        into.setdefault(edge["destination"], []).append(edge)
    lines = []
    for field in sorted(d for d in into if d.startswith(sink_prefix)):
        origins: set[str] = set()
        kinds: list[str] = []
        todo, seen = [field], {field}
        while todo:
            node = todo.pop()
            if node not in into:
                origins.add(node.removeprefix("datasetField:"))
                continue
            for edge in into[node]:
                for t in edge.get("transformations") or []:
                    kind = f"{t['type']}/{t['subtype']}" if t.get("subtype") else t["type"]
                    label = f"{kind}: {t['description']}" if t.get("description") else kind
                    if t.get("subtype") != "IDENTITY" and label not in kinds:
                        kinds.append(label)
                if edge["origin"] not in seen:
                    seen.add(edge["origin"])
                    todo.append(edge["origin"])
        short = field.removeprefix(sink_prefix)
        how = "; ".join(kinds) or "DIRECT/IDENTITY"
        lines.append(f"  {short:<20} <- {', '.join(sorted(origins)):<40} {how}")
    return lines


def quality_lines(run: PipelineRun) -> list[str]:
    transform = run.status.stage(StageName.TRANSFORM) if run.status else None
    if transform is None or not transform.quality:
        return ["  (no quality checks reported)"]
    lines = []
    for q in transform.quality:
        mark = "PASS" if q.success else ("FAIL" if q.severity == "fail" else "WARN")
        name = q.name or f"{q.type.value}({q.column})"
        failed = "" if q.failed_rows is None else f"{q.failed_rows} failed rows"
        sample = f"  e.g. {', '.join(q.sample)}" if q.sample and not q.success else ""
        lines.append(f"  {mark:<5} {name:<32} severity={q.severity.value:<5} {failed}{sample}")
    return lines


def render(
    body: dict[str, Any], spans: list[Span], width: int, warehouse: list[str] | None = None
) -> str:
    run = PipelineRun.model_validate(body)
    status = run.status
    head = f"PipelineRun {run.metadata.namespace}/{run.metadata.name}"
    if status is None:
        return f"{head}: not started yet"
    lines = [head]
    for cond in status.conditions:
        lines.append(f"  {cond.type:<16} {cond.status.value:<8} {cond.reason}: {cond.message}")
    lines.append(f"  run id {status.run_id}   trace id {status.trace_id}")
    lines += ["", "Stages"]
    for s in status.stages:
        rows_in = "-" if s.records_in is None else s.records_in
        rows_out = "-" if s.records_out is None else s.records_out
        line = f"  {s.name.value:<10} {s.phase.value:<10} attempts={s.attempts}"
        lines.append(f"{line}  {rows_in} -> {rows_out} rows  {s.message or ''}".rstrip())
    lines += [
        "",
        "Timeline",
        *gantt(spans, width),
        "",
        "Lineage" + (" (lineage warehouse)" if warehouse else " (from the spec)"),
        *(warehouse or lineage_lines(run)),
        "",
        "Quality",
        *quality_lines(run),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lineage-hub describe", description=__doc__)
    parser.add_argument("run", help="PipelineRun name")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument(
        "--jaeger", default=os.environ.get("JAEGER_QUERY_URL", "http://127.0.0.1:16686")
    )
    parser.add_argument(
        "--clickhouse-http",
        default=os.environ.get("CLICKHOUSE_HTTP_URL", ""),
        help="the lineage warehouse's ClickHouse HTTP URL (env CLICKHOUSE_HTTP_URL)",
    )
    args = parser.parse_args(argv)
    try:
        body = _fetch_run(args.run, args.namespace)
    except Exception as err:
        print(
            f"describe: cannot read pipelinerun {args.namespace}/{args.run}: {err}", file=sys.stderr
        )
        return 1
    trace_id = (body.get("status") or {}).get("traceId")
    spans = _fetch_spans(args.jaeger, trace_id) if trace_id else []
    warehouse = None
    if args.clickhouse_http:
        warehouse = warehouse_lines(PipelineRun.model_validate(body), args.clickhouse_http)
    print(render(body, spans, shutil.get_terminal_size((120, 40)).columns, warehouse))
    return 0
