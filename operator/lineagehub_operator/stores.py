"""Reads from the stores a run's telemetry ends up in: Marquez, ClickHouse, Jaeger.

Each call returns what the store holds, or raises `StoreUnavailable` naming the
store when it cannot answer (down, refusing, 5xx), so the caller can wait and
retry instead of concluding "not recorded".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

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
    try:
        reply = await client.get(url)
    except httpx.HTTPError as err:
        raise StoreUnavailable(store, f"{type(err).__name__} at {url}") from err
    if reply.status_code == 404:
        return None
    if reply.status_code >= 500:
        raise StoreUnavailable(store, f"HTTP {reply.status_code} at {url}")
    reply.raise_for_status()
    return reply


def _datasets(versions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for v in versions:
        ident = v.get("datasetVersionId") or v
        out.append((str(ident.get("namespace", "")), str(ident.get("name", ""))))
    return out


async def marquez_run(client: httpx.AsyncClient, base: str, run_id: str) -> MarquezRun | None:
    reply = await _get("Marquez", client, f"{base.rstrip('/')}/api/v1/jobs/runs/{run_id}")
    if reply is None:
        return None
    body = reply.json()
    return MarquezRun(
        state=str(body.get("state", "")),
        inputs=_datasets(body.get("inputDatasetVersions") or []),
        outputs=_datasets(body.get("outputDatasetVersions") or []),
    )


async def marquez_column_lineage(
    client: httpx.AsyncClient, base: str, namespace: str, name: str
) -> bool:
    """Whether Marquez has column lineage for a dataset."""
    ns, ds = quote(namespace, safe=""), quote(name, safe="")
    url = f"{base.rstrip('/')}/api/v1/namespaces/{ns}/datasets/{ds}"
    reply = await _get("Marquez", client, url)
    return bool(reply is not None and reply.json().get("columnLineage"))


async def warehouse_run(client: httpx.AsyncClient, base: str, run_id: str) -> WarehouseRun | None:
    """A run in the lineage warehouse, through the consumer's query endpoint."""
    url = f"{base.rstrip('/')}/api/v1/lineage/runs/{run_id}"
    reply = await _get("ClickHouse", client, url)
    if reply is None:
        return None
    try:
        body = reply.json()
        return WarehouseRun(
            state=str(body.get("state", "")),
            inputs=_datasets(body.get("inputs") or []),
            outputs=_datasets(body.get("outputs") or []),
            column_edges=int(body.get("columnEdges") or 0),
            finished_children=sum(
                1
                for c in body.get("children") or []
                if c.get("state") in {"COMPLETE", "FAIL", "ABORT"}
            ),
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise StoreUnavailable("ClickHouse", f"an answer that is not a run at {url}") from err


async def clickhouse_trace(client: httpx.AsyncClient, base: str, trace_id: str) -> TraceCount:
    """Spans of a trace in ClickHouse, through the otel consumer's query endpoint."""
    reply = await _get("ClickHouse", client, f"{base.rstrip('/')}/api/v1/traces/{trace_id}")
    if reply is None:
        return TraceCount(0, frozenset())
    body = reply.json()
    return TraceCount(int(body.get("spanCount", 0)), frozenset(body.get("spanNames") or []))


async def jaeger_trace(client: httpx.AsyncClient, base: str, trace_id: str) -> TraceCount:
    reply = await _get("Jaeger", client, f"{base.rstrip('/')}/api/traces/{trace_id}")
    if reply is None:
        return TraceCount(0, frozenset())
    spans = [s for trace in reply.json().get("data") or [] for s in trace.get("spans") or []]
    return TraceCount(len(spans), frozenset(str(s.get("operationName", "")) for s in spans))
