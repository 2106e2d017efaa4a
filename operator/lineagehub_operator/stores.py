"""Reads from the stores a run's telemetry ends up in: Marquez, ClickHouse, Jaeger.

Each call returns what the store holds, or raises `StoreUnavailable` naming the
store when it cannot answer (down, refusing, 5xx), so the caller can wait and
retry instead of concluding "not recorded". An answer that is no answer (a 4xx
other than 404, a body that is not the JSON asked for) is the same: the store's
verdict says what came back; it never becomes an exception that ends the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from lineagehub.datasets import redact_uri

TIMEOUT = httpx.Timeout(5.0)


class StoreUnavailable(Exception):
    def __init__(self, store: str, detail: str) -> None:
        self.store = store
        super().__init__(f"{store}: {detail}")


@dataclass(frozen=True)
class MarquezRun:
    state: str
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]


@dataclass(frozen=True)
class WarehouseRun:
    """A run as the ClickHouse lineage warehouse holds it (OpenLineage states)."""

    state: str
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]
    column_edges: int
    finished_children: int = 0  # child runs (a PipelineRun's stages) in a terminal state


@dataclass(frozen=True)
class TraceCount:
    spans: int
    names: frozenset[str]


async def _get(store: str, client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    shown = redact_uri(url)
    try:
        reply = await client.get(url)
    except httpx.HTTPError as err:
        raise StoreUnavailable(store, f"{type(err).__name__} at {shown}") from err
    if reply.status_code == 404:
        return None
    if reply.status_code >= 400:
        raise StoreUnavailable(store, f"HTTP {reply.status_code} at {shown}")
    if reply.status_code >= 300:  # redirects are not followed: the URL is misconfigured
        raise StoreUnavailable(store, f"HTTP {reply.status_code} (a redirect) at {shown}")
    return reply


def _json(store: str, reply: httpx.Response) -> dict[str, Any]:
    """The reply's JSON object, or StoreUnavailable naming what came instead."""
    shown = redact_uri(str(reply.request.url))
    try:
        body = reply.json()
    except ValueError as err:
        raise StoreUnavailable(store, f"an answer that is not JSON at {shown}") from err
    if not isinstance(body, dict):
        raise StoreUnavailable(store, f"an answer that is not a JSON object at {shown}")
    return body


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _datasets(versions: Any) -> list[tuple[str, str]]:
    out = []
    for v in _objects(versions):
        ident = v.get("datasetVersionId") or v
        if not isinstance(ident, dict):
            continue
        out.append((str(ident.get("namespace", "")), str(ident.get("name", ""))))
    return out


def _int(store: str, value: Any, what: str) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError) as err:
        raise StoreUnavailable(store, f"{what} is not a number: {str(value)[:64]!r}") from err


async def marquez_run(client: httpx.AsyncClient, base: str, run_id: str) -> MarquezRun | None:
    reply = await _get("Marquez", client, f"{base.rstrip('/')}/api/v1/jobs/runs/{run_id}")
    if reply is None:
        return None
    body = _json("Marquez", reply)
    return MarquezRun(
        state=str(body.get("state", "")),
        inputs=_datasets(body.get("inputDatasetVersions")),
        outputs=_datasets(body.get("outputDatasetVersions")),
    )


async def marquez_column_lineage(
    client: httpx.AsyncClient, base: str, namespace: str, name: str
) -> bool:
    """Whether Marquez has column lineage for a dataset."""
    ns, ds = quote(namespace, safe=""), quote(name, safe="")
    url = f"{base.rstrip('/')}/api/v1/namespaces/{ns}/datasets/{ds}"
    reply = await _get("Marquez", client, url)
    return bool(reply is not None and _json("Marquez", reply).get("columnLineage"))


async def warehouse_run(client: httpx.AsyncClient, base: str, run_id: str) -> WarehouseRun | None:
    """A run in the lineage warehouse, through the consumer's query endpoint."""
    url = f"{base.rstrip('/')}/api/v1/lineage/runs/{run_id}"
    reply = await _get("ClickHouse", client, url)
    if reply is None:
        return None
    body = _json("ClickHouse", reply)
    return WarehouseRun(
        state=str(body.get("state", "")),
        inputs=_datasets(body.get("inputs")),
        outputs=_datasets(body.get("outputs")),
        column_edges=_int("ClickHouse", body.get("columnEdges"), "columnEdges"),
        finished_children=sum(
            1
            for c in _objects(body.get("children"))
            if c.get("state") in {"COMPLETE", "FAIL", "ABORT"}
        ),
    )


async def clickhouse_trace(client: httpx.AsyncClient, base: str, trace_id: str) -> TraceCount:
    """Spans of a trace in ClickHouse, through the otel consumer's query endpoint."""
    reply = await _get("ClickHouse", client, f"{base.rstrip('/')}/api/v1/traces/{trace_id}")
    if reply is None:
        return TraceCount(0, frozenset())
    body = _json("ClickHouse", reply)
    names = body.get("spanNames")
    return TraceCount(
        _int("ClickHouse", body.get("spanCount"), "spanCount"),
        frozenset(str(n) for n in names) if isinstance(names, list) else frozenset(),
    )


async def jaeger_trace(client: httpx.AsyncClient, base: str, trace_id: str) -> TraceCount:
    reply = await _get("Jaeger", client, f"{base.rstrip('/')}/api/traces/{trace_id}")
    if reply is None:
        return TraceCount(0, frozenset())
    traces = _objects(_json("Jaeger", reply).get("data"))
    spans = [s for trace in traces for s in _objects(trace.get("spans"))]
    return TraceCount(len(spans), frozenset(str(s.get("operationName", "")) for s in spans))
