"""`lineage-hub consume otel|warehouse`: a batch size, a batch wait or a retention that
would stall the consumer or keep what its user meant to expire is refused at the start,
naming the option; the values it takes reach its arguments as numbers."""

from __future__ import annotations

import pytest

from consumers import cli


@pytest.mark.parametrize("command", ["otel", "warehouse"])
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--batch-rows", "0"),
        ("--batch-rows", "-10"),
        ("--batch-rows", "1e4"),
        ("--batch-wait", "0"),
        ("--batch-wait", "-1"),
        ("--batch-wait", "nan"),
        ("--batch-wait", "inf"),
        ("--batch-wait", "soon"),
        ("--ttl-days", "-1"),
        ("--ttl-days", "7.5"),
    ],
)
def test_a_value_the_consumer_cannot_use_is_refused_naming_the_option(
    capsys: pytest.CaptureFixture[str], command: str, option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--health-port", "-1", option, value])
    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert option in said and value in said, said


def test_the_values_it_takes() -> None:
    args = cli._parser().parse_args(
        ["otel", "--batch-rows", "1", "--batch-wait", "0.25", "--ttl-days", "0"]
    )
    assert (args.batch_rows, args.batch_wait, args.ttl_days) == (1, 0.25, 0)
    defaults = cli._parser().parse_args(["warehouse"])
    assert (defaults.batch_rows, defaults.batch_wait, defaults.ttl_days) == (10_000, 1.0, 0)
