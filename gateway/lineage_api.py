"""`GET` routes of the lineage graph API, read from the ClickHouse lineage warehouse.

Shapes follow Marquez where Marquez has the same read (`/lineage`, `/column-lineage`:
`graph: [{id, type, data, inEdges, outEdges}]`, node ids `dataset:<ns>:<name>`), so
tools written for Marquez read ours; what Marquez cannot answer (separate upstream
and downstream depth, time travel, edges with first/last seen and the last run, runs
with their trace ids) is added beside it.
"""

# No `from __future__ import annotations`: FastAPI reads the parameters' annotations at
# run time, and those naming this module's locals (`Depth`, `Nodes`) resolve only when
# they are evaluated where they are written.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from gateway import clickhouse
from gateway.auth import Principal
from lineagehub.lineage_ids import NodeIdError, parse_node
from lineagehub.warehouse_reader import (
    DEFAULT_NODES,
    MAX_DEPTH,
    MAX_NODES,
    BadParameter,
    LineageReader,
    NotFound,
    Walk,
    check_depth,
    check_nodes,
    parse_time,
)

API = "/api/v1"
NODE_ID_DOC = (
    "`dataset:<namespace>:<name>`, `job:<namespace>:<name>` or "
    "`datasetField:<namespace>:<name>:<field>` (URL-encoded; namespaces may hold `://` and a port)"
)


def _bad(param: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"param": param, "message": message}]}, status_code=400)


def router(
    store: Callable[[], clickhouse.MetricsStore | None],
    database: str,
    reader_auth: Callable[..., Awaitable[Principal]],
    retry_after_s: int,
) -> APIRouter:
    # Auth on the router, so that every route on it, a later one too, needs the scope.
    routes = APIRouter(tags=["lineage"], dependencies=[Depends(reader_auth)])

    async def answer(call: Callable[[LineageReader], Awaitable[Any]]) -> JSONResponse:
        source = store()
        if source is None:
            return JSONResponse(
                {"detail": clickhouse.UNCONFIGURED},
                status_code=503,
                headers={"Retry-After": str(retry_after_s)},
            )
        try:
            body = await call(LineageReader(source.rows, database))
        except BadParameter as exc:
            return _bad(exc.param, str(exc))
        except NotFound as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except clickhouse.MetricsUnavailable as exc:
            return JSONResponse(
                {"detail": f"the lineage warehouse (ClickHouse) is unavailable: {exc}"},
                status_code=503,
                headers={"Retry-After": str(retry_after_s)},
            )
        return JSONResponse(body)

    def walk(
        node_id: str, depth: int | None, up: int | None, down: int | None, max_nodes: int
    ) -> Walk:
        try:
            node = parse_node(node_id)
        except NodeIdError as exc:
            raise BadParameter("nodeId", str(exc)) from None
        default = 20 if depth is None else check_depth("depth", depth)
        return Walk(
            node,
            check_depth("upstreamDepth", default if up is None else up),
            check_depth("downstreamDepth", default if down is None else down),
            check_nodes(max_nodes),
        )

    Depth = Annotated[int | None, Query(description=f"0..{MAX_DEPTH} job hops")]
    Nodes = Annotated[int, Query(alias="maxNodes", description=f"1..{MAX_NODES}")]

    @routes.get(f"{API}/lineage", summary="The job/dataset graph around a node")
    async def lineage_graph(
        node_id: Annotated[str, Query(alias="nodeId", description=NODE_ID_DOC)],
        depth: Depth = None,
        upstream_depth: Annotated[int | None, Query(alias="upstreamDepth")] = None,
        downstream_depth: Annotated[int | None, Query(alias="downstreamDepth")] = None,
        as_of: Annotated[str | None, Query(alias="asOf", description="RFC 3339 time")] = None,
        as_of_run: Annotated[str | None, Query(alias="asOfRun", description="a run id")] = None,
        max_nodes: Nodes = DEFAULT_NODES,
    ) -> JSONResponse:
        async def call(reader: LineageReader) -> Any:
            w = walk(node_id, depth, upstream_depth, downstream_depth, max_nodes)
            if as_of is not None and as_of_run is not None:
                raise BadParameter("asOf", "give asOf or asOfRun, not both")
            at = parse_time("asOf", as_of) if as_of is not None else None
            if as_of_run is not None:
                at = await reader.run_end_ns(as_of_run)
            return await reader.graph(Walk(w.node, w.up, w.down, w.max_nodes, at))

        return await answer(call)

    @routes.get(f"{API}/column-lineage", summary="Column lineage of a field or a dataset")
    async def column_lineage(
        node_id: Annotated[str, Query(alias="nodeId", description=NODE_ID_DOC)],
        depth: Depth = None,
        upstream_depth: Annotated[int | None, Query(alias="upstreamDepth")] = None,
        downstream_depth: Annotated[int | None, Query(alias="downstreamDepth")] = None,
        with_downstream: Annotated[bool, Query(alias="withDownstream")] = False,
        max_nodes: Nodes = DEFAULT_NODES,
    ) -> JSONResponse:
        """As Marquez: upstream to `depth`; downstream only `withDownstream` (or when
        `downstreamDepth` is given)."""
        down = downstream_depth
        if down is None:
            down = (depth if depth is not None else 20) if with_downstream else 0

        async def call(reader: LineageReader) -> Any:
            return await reader.column_lineage(
                walk(node_id, depth, upstream_depth, down, max_nodes)
            )

        return await answer(call)

    @routes.get(f"{API}/lineage/runs/{{run_id}}", summary="A run: state, inputs, outputs, facets")
    async def lineage_run(
        run_id: str,
    ) -> JSONResponse:
        return await answer(lambda reader: reader.run(run_id))

    @routes.get(f"{API}/lineage/job", summary="A job's run history")
    async def lineage_job(
        namespace: str,
        name: str,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JSONResponse:
        return await answer(lambda reader: reader.job_runs(namespace, name, limit))

    @routes.get(f"{API}/lineage/dataset", summary="A dataset: schema versions, writers, readers")
    async def lineage_dataset(
        namespace: str,
        name: str,
    ) -> JSONResponse:
        return await answer(lambda reader: reader.dataset(namespace, name))

    @routes.get(f"{API}/lineage/search", summary="Jobs and datasets whose name contains q")
    async def lineage_search(
        q: Annotated[str, Query(min_length=1, max_length=256)],
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> JSONResponse:
        async def call(reader: LineageReader) -> Any:
            return {"results": await reader.search(q, limit)}

        return await answer(call)

    return routes
