"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The stack's endpoints (CONSUMERS_TEST_EXTERNAL=1: take them from the environment)."""
    if os.environ.get("CONSUMERS_TEST_EXTERNAL") == "1":
        yield dict(os.environ)
    else:
        yield request.getfixturevalue("stack").env
