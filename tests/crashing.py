"""A backend that crashes like a killed process, for the kill-mid-batch tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consumers.otel.backend import ChdbBackend, Rows
from consumers.otel.ddl import Table


class Crash(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the consumer catches it."""


@dataclass
class CrashingBackend:
    """A chdb backend that dies right after the n-th insert into `table` (before the commit)."""

    inner: ChdbBackend
    crash_after: int
    table: str = "otel_traces"
    tokens: list[str] = field(default_factory=list)
    crashed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def database(self) -> str:
        return self.inner.database

    async def setup(self, statements: Sequence[str] | None = None) -> None:
        await self.inner.setup(statements)

    async def insert(self, table: Table, rows: Rows, token: str) -> None:
        if self.crashed.is_set():
            raise Crash  # a dead process inserts nothing more
        await self.inner.insert(table, rows, token)
        if table.name == self.table:
            self.tokens.append(token)
            if len(self.tokens) == self.crash_after:
                self.crashed.set()
                raise Crash

    async def query(self, sql: str) -> list[dict[str, Any]]:
        return await self.inner.query(sql)

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        pass
