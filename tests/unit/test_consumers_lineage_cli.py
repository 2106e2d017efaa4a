"""`lineage-hub consume lineage`: its options reach the consumer's settings."""

from __future__ import annotations

import asyncio

import pytest

from consumers import cli, logs
from consumers.lineage.consumer import LineageConsumer, LineageSettings


class Started(LineageConsumer):
    """The consumer `main` builds, noting its settings; its run ends at once."""

    settings: list[LineageSettings] = []

    async def run(self, stop: asyncio.Event) -> None:
        Started.settings.append(self.s)
        await self.marquez.aclose()


def started_with(monkeypatch: pytest.MonkeyPatch, *options: str) -> LineageSettings:
    monkeypatch.setattr(logs, "setup", lambda level="INFO": None)  # pytest keeps its logging
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # no span exporter
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    monkeypatch.setattr(cli, "LineageConsumer", Started)
    monkeypatch.setattr(Started, "settings", [])
    assert cli.main(["lineage", "--health-port", "-1", *options]) == 0
    (settings,) = Started.settings
    return settings


def test_dispatch_slice_and_max_uncommitted_reach_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = started_with(monkeypatch, "--dispatch-slice", "5", "--max-uncommitted", "100")
    assert (settings.dispatch_slice, settings.max_uncommitted) == (5, 100)
    assert settings.lanes == LineageSettings.lanes  # the others keep their defaults


def test_without_them_the_consumer_keeps_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = started_with(monkeypatch)
    assert (settings.dispatch_slice, settings.max_uncommitted) == (16, 4096)


@pytest.mark.parametrize("option", ["--dispatch-slice", "--max-uncommitted", "--lanes"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_a_count_below_one_is_refused_at_the_start_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    """0 made the dispatch's range step raise on the first fetch, a negative slice
    queued nothing and stalled, 0 uncommitted paused every partition for ever."""
    monkeypatch.setattr(cli, "LineageConsumer", Started)
    monkeypatch.setattr(Started, "settings", [])
    with pytest.raises(SystemExit) as exited:
        cli.main(["lineage", "--health-port", "-1", option, value])
    assert exited.value.code == 2
    assert option in capsys.readouterr().err
    assert Started.settings == []
