"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.otel.backend import ChdbBackend
from stack import supervisor
from stack.registry import select
from tests.conftest import StackHandle
from tests.marquez_standin import MarquezStandin


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The stack's endpoints (CONSUMERS_TEST_EXTERNAL=1: take them from the environment)."""
    if os.environ.get("CONSUMERS_TEST_EXTERNAL") == "1":
        yield dict(os.environ)
    else:
        yield request.getfixturevalue("stack").env


@pytest.fixture
async def chdb(tmp_path: Path) -> AsyncIterator[ChdbBackend]:
    """A chdb store of the test's own."""
    backend = ChdbBackend(str(tmp_path / "chdb"))
    yield backend
    await backend.close()


@pytest.fixture
async def standin() -> AsyncIterator[MarquezStandin]:
    """A Marquez stand-in on loopback (tests/marquez_standin.py)."""
    server = MarquezStandin()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def operator(stack: Any) -> None:
    """The stack's operator is up (started if a test before stopped it)."""
    supervisor.up(select(["operator"]))


@pytest.fixture
def kafka(stack: StackHandle) -> Iterator[StackHandle]:
    """The stack, handed to a test that stops its broker: up again at the end, whatever
    happened (`start` also creates the stack's topics when it starts the broker)."""
    if os.environ.get("CONSUMERS_TEST_EXTERNAL") == "1":
        pytest.skip("stops the stack's own broker: not against an external Kafka")
    try:
        yield stack
    finally:
        stack.start("kafka")
