"""The served gateway sets the garbage collector for serving (`gateway.gc_tuning`): what
start-up made is frozen and the first-generation threshold raised, never lowered. The
collector's global state is put back after each test."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway import gc_tuning
from gateway.app import served_app
from gateway.auth import parse_tokens
from gateway.config import Settings


@pytest.fixture
def collector_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_restored")
def test_served_app_freezes_start_up_and_raises_the_first_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    gc.set_threshold(700, 10, 10)
    assert gc.get_freeze_count() == 0
    served_app(Settings(tokens=parse_tokens("gc-tuning-token-000000001:lineage:write")))
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (gc_tuning.GEN0_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("collector_restored")
def test_a_higher_threshold_already_set_is_kept() -> None:
    gc.set_threshold(50_000, 20, 30)
    gc_tuning.tune_for_serving()
    assert gc.get_threshold() == (50_000, 20, 30)
    assert gc.get_freeze_count() > 0
