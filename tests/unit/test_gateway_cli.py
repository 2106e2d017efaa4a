"""The gateway's command line: a bad worker count is a usage error naming the fix."""

from __future__ import annotations

import pytest

from gateway.cli import parser


@pytest.mark.parametrize("value", ["auto", "0", "-1", "1.5", "²", ""])
def test_a_bad_worker_count_names_the_variable_and_the_fix(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["--workers", value])
    assert exit_.value.code == 2
    said = capsys.readouterr().err
    assert "LINEAGEHUB_GATEWAY_WORKERS" in said and "whole number" in said


def test_the_worker_count_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGEHUB_GATEWAY_WORKERS", "3")
    assert parser().parse_args([]).workers == 3
    monkeypatch.delenv("LINEAGEHUB_GATEWAY_WORKERS")
    assert parser().parse_args([]).workers == 1
    monkeypatch.setenv("LINEAGEHUB_GATEWAY_WORKERS", "auto")
    with pytest.raises(SystemExit):
        parser().parse_args([])
