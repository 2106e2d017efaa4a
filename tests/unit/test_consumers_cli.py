from __future__ import annotations

import subprocess
import sys

import pytest

from consumers import cli, logs


@pytest.fixture(autouse=True)
def keep_pytest_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`main` installs the JSON log handler on the root logger; not inside pytest."""
    monkeypatch.setattr(logs, "setup", lambda level="INFO": None)


def test_native_backend_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    assert cli.main(["otel", "--clickhouse-backend", "native", "--health-port", "-1"]) == 2


def test_chdb_backend_needs_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICKHOUSE_CHDB_PATH", raising=False)
    assert cli.main(["otel", "--clickhouse-backend", "chdb", "--health-port", "-1"]) == 2


def test_flags_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "127.0.0.1:19999")
    monkeypatch.setenv("MARQUEZ_URL", "http://127.0.0.1:15000")
    monkeypatch.setenv("CLICKHOUSE_CHDB_PATH", "/tmp/x")
    lineage = cli._parser().parse_args(["lineage"])
    assert (lineage.bootstrap, lineage.marquez_url) == ("127.0.0.1:19999", "http://127.0.0.1:15000")
    assert lineage.topic == "openlineage-events"
    otel = cli._parser().parse_args(["otel"])
    assert (otel.clickhouse_backend, otel.chdb_path) == ("chdb", "/tmp/x")
    assert (otel.spans_topic, otel.metrics_topic) == ("otel-spans", "otel-metrics")


def test_unknown_subcommand_exits() -> None:
    with pytest.raises(SystemExit):
        cli.main(["nope"])


def test_the_lineage_consumer_loads_nothing_of_clickhouse() -> None:
    """`consume lineage` must stay small at rest: chdb alone maps ~200 MiB, pyarrow and
    clickhouse-driver (with numpy) most of the rest; only the ClickHouse commands load them."""
    heavy = ("chdb", "pyarrow", "clickhouse_driver", "numpy", "polars", "kopf")
    code = (
        "import sys; from consumers import cli; "
        "cli._parser().parse_args(['lineage']); "
        "from consumers.lineage.consumer import LineageConsumer; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
