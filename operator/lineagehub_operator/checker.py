"""Looks a finished run up in Marquez, ClickHouse and Jaeger (the I/O half of verify)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import httpx

from lineagehub.api.pipelinerun import PipelineRun, PipelineRunStatus
from lineagehub.datasets import dataset_of
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.decide import ended_at
from lineagehub_operator.manifests import openlineage_names
from lineagehub_operator.stores import (
    StoreUnavailable,
    clickhouse_trace,
    jaeger_trace,
    marquez_column_lineage,
    marquez_run,
    warehouse_run,
)
from lineagehub_operator.verify import Links, Lookup, awaiting, verified_status

T = TypeVar("T")


async def _lookup(url: str | None, fetch: Callable[[str], Awaitable[T | None]]) -> Lookup[T]:
    if not url:
        return Lookup(configured=False)
    try:
        return Lookup(value=await fetch(url))
    except StoreUnavailable as err:
        return Lookup(error=str(err))


class StoreChecker:
    def __init__(
        self, config: OperatorConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(5.0), transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    def links(self, run: PipelineRun) -> Links:
        status = run.status
        assert status is not None
        namespace, job = openlineage_names(run, self._config)
        marquez, jaeger = self._config.marquez_public_url, self._config.jaeger_public_url
        return Links(
            namespace=namespace,
            job=job,
            marquez_url=f"{marquez.rstrip('/')}/api/v1/jobs/runs/{status.run_id}"
            if marquez
            else None,
            jaeger_url=f"{jaeger.rstrip('/')}/trace/{status.trace_id}" if jaeger else None,
        )

    def awaiting(self, run: PipelineRun, now: datetime) -> PipelineRunStatus:
        """The run's status as it ends, before the stores are asked (verify.awaiting)."""
        c = self._config
        return awaiting(
            run,
            self.links(run),
            now,
            marquez=bool(c.marquez_url),
            warehouse=bool(c.lineage_store_url),
            trace_store=bool(c.trace_store_url),
            jaeger=bool(c.jaeger_query_url),
        )

    async def check(self, run: PipelineRun, now: datetime) -> PipelineRunStatus:
        status = run.status
        assert status is not None and status.run_id and status.trace_id
        run_id, trace_id, c = status.run_id, status.trace_id, self._client
        marquez = await _lookup(self._config.marquez_url, lambda url: marquez_run(c, url, run_id))
        column_lineage: bool | None = None
        if marquez.value is not None and self._config.marquez_url:
            namespace, name = dataset_of(run.spec.sink.uri)
            try:
                column_lineage = await marquez_column_lineage(
                    c, self._config.marquez_url, namespace, name
                )
            except StoreUnavailable:
                column_lineage = None
        warehouse = await _lookup(
            self._config.lineage_store_url, lambda url: warehouse_run(c, url, run_id)
        )
        clickhouse = await _lookup(
            self._config.trace_store_url, lambda url: clickhouse_trace(c, url, trace_id)
        )
        jaeger = await _lookup(
            self._config.jaeger_query_url, lambda url: jaeger_trace(c, url, trace_id)
        )
        finished = ended_at(status) or now
        expired = now > finished + timedelta(seconds=self._config.verify_timeout_seconds)
        return verified_status(
            run,
            self.links(run),
            marquez,
            column_lineage,
            clickhouse,
            jaeger,
            expired,
            now,
            warehouse=warehouse,
        )
