"""What the console reads beyond the runs and lineage APIs: a live run list (server-sent
events), a run's Kubernetes Events, a trace's spans, the dashboards' panels (the same
SQL as the Grafana dashboards), and the links to configure. JSON only; the pages are
`gateway/console_pages.py`."""

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse

from gateway import clickhouse
from gateway.auth import Principal
from gateway.run_feed import SharedReads, Snapshot
from gateway.runs import DNS_LABEL, KubeError, RunStore, manifest, view
from gateway.tracing import run_traceparent
from lineagehub.warehouse_sql import quote

API = "/api/v1"
TRACE_ID = r"^[0-9a-f]{32}$"
MAX_SPANS = 5000
#: Fields of a run's spec that belong to that run alone, not to a run made again from it.
AGAIN_DROPS = frozenset({"cancel", "suspend", "rerun"})
STREAM_EVERY_S = 1.0
#: The Grafana dashboards (the chart provisions the same files).
DASHBOARDS_DIR = Path(
    os.environ.get("LINEAGEHUB_DASHBOARDS_DIR")
    or Path(__file__).resolve().parent.parent / "charts" / "lineage-hub" / "dashboards"
)


@runtime_checkable
class CanCancel(Protocol):
    async def cancel(self, namespace: str, name: str) -> dict[str, Any]: ...


@runtime_checkable
class HasEvents(Protocol):
    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]: ...


def expand_macros(sql: str, start_s: int, end_s: int, variables: dict[str, str]) -> str:
    """Grafana's ClickHouse-plugin macros and `${var:singlequote}` variables, as Grafana
    expands them, so a panel's SQL runs here unchanged."""
    sql = re.sub(
        r"\$__timeFilter\(([\w.]+)\)",
        lambda m: f"{m[1]} >= toDateTime({start_s}) AND {m[1]} <= toDateTime({end_s})",
        sql,
    )
    step = max(60, (end_s - start_s) // 200)
    sql = re.sub(
        r"\$__timeInterval\(([\w.]+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {step} second)",
        sql,
    )
    for name, value in variables.items():
        literal = quote(value)
        sql = sql.replace(f"${{{name}:singlequote}}", literal).replace(f"${{{name}}}", literal)
    return sql


def _in_db(sql: str, database: str) -> str:
    """Grafana's datasource names the default database; name it where a panel leaves it out."""
    return re.sub(
        r"\b(FROM|JOIN)\s+(pipeline_runs|otel_\w+|lineage_\w+)\b",
        lambda m: f"{m[1]} {database}.{m[2]}",
        sql,
    )


#: The Grafana datasource type whose panels the console can run (their `rawSql`).
CONSOLE_DATASOURCE = "grafana-clickhouse-datasource"


def _on_clickhouse(dash: dict[str, Any]) -> bool:
    """Every panel of `dash` reads ClickHouse. A dashboard on another datasource (the
    Prometheus one about lineage-hub itself) is Grafana's alone: the console cannot run
    its queries, so it does not offer it rather than show panels that can only fail."""
    return all(
        (panel.get("datasource") or {}).get("type") == CONSOLE_DATASOURCE
        for panel in dash.get("panels", [])
    )


def _dashboards() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dash = json.loads(path.read_text())
        if _on_clickhouse(dash):
            out[str(dash["uid"])] = dash
    return out


def _json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(rows, default=str))  # type: ignore[no-any-return]


def router(
    runs: Callable[[], RunStore | None],
    store: Callable[[], clickhouse.MetricsStore | None],
    database: str,
    runs_auth: Callable[..., Awaitable[Principal]],
    runs_write_auth: Callable[..., Awaitable[Principal]],
    default_namespace: str,
    links: dict[str, str],
    stream_seconds: float = 600.0,
) -> APIRouter:
    routes = APIRouter(tags=["console"])

    async def read_runs(ns: str) -> Snapshot:
        source = runs()
        try:
            if source is None:
                raise KubeError(503, "no Kubernetes API configured")
            items = [view(o, "") for o in await source.list(ns, 500)]
            return Snapshot("runs", json.dumps({"namespace": ns, "items": items}, default=str))
        except KubeError as exc:
            return Snapshot("error", json.dumps({"detail": str(exc), "store": "kubernetes"}))

    # Every open stream of a namespace shares one read a tick (gateway/run_feed.py).
    shared_runs = SharedReads(read_runs, fresh_for=STREAM_EVERY_S / 2)

    def unavailable(what: str, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail, "store": what}, status_code=503)

    @routes.get(f"{API}/console/config", summary="Links the console shows (no secrets)")
    async def console_config() -> JSONResponse:
        return JSONResponse({"links": links, "defaultNamespace": default_namespace})

    @routes.get(f"{API}/pipeline/runs/stream", summary="Runs of a namespace, live (SSE)")
    async def runs_stream(
        _principal: Annotated[Principal, Depends(runs_auth)],
        namespace: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL)] = None,
    ) -> StreamingResponse:
        ns = namespace or default_namespace

        async def events() -> AsyncIterator[bytes]:
            last = ""
            deadline = time.monotonic() + stream_seconds
            first = True
            while first or time.monotonic() < deadline:
                first = False
                snapshot = await shared_runs.get(ns)
                if snapshot.body != last:  # the same read, or an equal one: no news
                    last = snapshot.body
                    yield f"event: {snapshot.kind}\ndata: {snapshot.body}\n\n".encode()
                else:
                    yield b": keep-alive\n\n"
                if time.monotonic() < deadline:
                    await asyncio.sleep(STREAM_EVERY_S)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @routes.post(f"{API}/pipeline/run/{{name}}/cancel", summary="Cancel a run (spec.cancel)")
    async def cancel_run(
        _principal: Annotated[Principal, Depends(runs_write_auth)],
        name: Annotated[str, PathParam(max_length=253)],
        namespace: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL)] = None,
    ) -> JSONResponse:
        source = runs()
        if not isinstance(source, CanCancel):
            return unavailable("kubernetes", "no Kubernetes API configured")
        try:
            patched = await source.cancel(namespace or default_namespace, name)
        except KubeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return JSONResponse(view(patched, ""), status_code=202)

    @routes.post(
        f"{API}/pipeline/run/{{name}}/again",
        status_code=201,
        summary="Run again: a new run with this run's spec, copied on the server",
    )
    async def run_again(
        request: Request,
        _principal: Annotated[Principal, Depends(runs_write_auth)],
        name: Annotated[str, PathParam(max_length=253)],
        namespace: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL)] = None,
    ) -> JSONResponse:
        """The spec is copied as stored, never from what a reader was shown: readers see
        URIs with their credentials redacted, which would not run."""
        source = runs()
        if source is None:
            return unavailable("kubernetes", "no Kubernetes API configured")
        ns = namespace or default_namespace
        try:
            stored = await source.get(ns, name)
            spec = {
                key: value
                for key, value in (stored.get("spec") or {}).items()
                if key not in AGAIN_DROPS
            }
            prefix = f"{name[:40].rstrip('-')}-"
            request_id = str(getattr(request.state, "request_id", ""))
            traceparent = run_traceparent(request.headers)
            obj = manifest(spec, None, ns, request_id, prefix, traceparent=traceparent)
            created = await source.create(ns, obj)
        except KubeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return JSONResponse(view(created, ""), status_code=201)

    @routes.get(f"{API}/pipeline/run/{{name}}/events", summary="A run's Kubernetes Events")
    async def run_events(
        _principal: Annotated[Principal, Depends(runs_auth)],
        name: Annotated[str, PathParam(max_length=253)],
        namespace: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL)] = None,
    ) -> JSONResponse:
        source = runs()
        if not isinstance(source, HasEvents):
            return unavailable("kubernetes", "no Kubernetes API configured")
        try:
            items = await source.events(namespace or default_namespace, name)
        except KubeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        return JSONResponse({"items": items})

    @routes.get(f"{API}/traces/{{trace_id}}/spans", summary="A trace's spans from ClickHouse")
    async def trace_spans(
        _principal: Annotated[Principal, Depends(runs_auth)],
        trace_id: Annotated[str, PathParam(pattern=TRACE_ID)],
    ) -> JSONResponse:
        source = store()
        if source is None:
            return unavailable("clickhouse", clickhouse.UNCONFIGURED)
        try:
            rows = await source.rows(
                "SELECT SpanId AS spanId, ParentSpanId AS parentSpanId, SpanName AS name, "
                "ServiceName AS service, toUnixTimestamp64Nano(Timestamp) AS startNs, "
                "Duration AS durationNs, StatusCode AS status, StatusMessage AS message, "
                "SpanAttributes AS attributes "
                f"FROM {database}.otel_traces WHERE TraceId = '{trace_id}' "
                f"ORDER BY Timestamp LIMIT {MAX_SPANS}"
            )
        except clickhouse.MetricsUnavailable as exc:
            return unavailable("clickhouse", str(exc))
        for row in rows:
            row["startNs"], row["durationNs"] = int(row["startNs"]), int(row["durationNs"])
        return JSONResponse({"traceId": trace_id, "spans": _json_safe(rows)})

    @routes.get(f"{API}/dashboards", summary="The dashboards and their panels")
    async def dashboards(_principal: Annotated[Principal, Depends(runs_auth)]) -> JSONResponse:
        return JSONResponse(
            {
                "dashboards": [
                    {
                        "uid": uid,
                        "title": d["title"],
                        "panels": [
                            {
                                "id": p["id"],
                                "title": p["title"],
                                "type": p["type"],
                                # Grafana's unit for the panel's values (percentunit, s,
                                # bytes, short...): the console formats them as Grafana does.
                                "unit": p.get("fieldConfig", {})
                                .get("defaults", {})
                                .get("unit", ""),
                            }
                            for p in d["panels"]
                        ],
                        "variables": [
                            v["name"] for v in d["templating"]["list"] if v["type"] == "query"
                        ],
                    }
                    for uid, d in _dashboards().items()
                ]
            }
        )

    @routes.get(f"{API}/dashboards/{{uid}}/panels/{{panel_id}}", summary="One panel's rows")
    async def panel_rows(
        _principal: Annotated[Principal, Depends(runs_auth)],
        uid: Annotated[str, PathParam(max_length=64)],
        panel_id: int,
        hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
        pipeline: Annotated[str, Query(max_length=256)] = "__all",
        service: Annotated[str, Query(max_length=256)] = "__all",
        run_id: Annotated[str, Query(alias="runId", max_length=64)] = "",
        dataset: Annotated[str, Query(max_length=2048)] = "",
    ) -> JSONResponse:
        dash = _dashboards().get(uid)
        panel = next((p for p in (dash or {}).get("panels", []) if p["id"] == panel_id), None)
        if dash is None or panel is None:
            return JSONResponse({"detail": f"no panel {panel_id} in dashboard {uid}"}, 404)
        source = store()
        if source is None:
            return unavailable("clickhouse", clickhouse.UNCONFIGURED)
        end = int(time.time()) + 60
        variables = {"pipeline": pipeline, "service": service, "run_id": run_id}
        variables.update(
            {"dataset": dataset, "trace_id": "", "jaeger_url": links.get("jaeger", "")}
        )
        out = []
        for target in panel["targets"]:
            sql = _in_db(
                expand_macros(target["rawSql"], end - hours * 3600, end, variables), database
            )
            try:
                out.append(_json_safe(await source.rows(sql)))
            except clickhouse.MetricsUnavailable as exc:
                return unavailable("clickhouse", str(exc))
        return JSONResponse(
            {
                "uid": uid,
                "id": panel_id,
                "title": panel["title"],
                "type": panel["type"],
                "rows": out,
            }
        )

    return routes
