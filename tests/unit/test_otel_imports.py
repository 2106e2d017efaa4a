"""What the otel consumer process has loaded at rest, per ClickHouse backend.

Each case runs in a fresh interpreter: the CLI's own code path opens the backend and
builds the consumers (the chdb one also creates its tables, as `run` does first), then
the test reads `sys.modules`. chdb maps ~200 MiB resident, pyarrow with numpy and ptars
~40 more: the native backend (as the chart runs it) must load none of them until a
record needs them, and the chdb backend must not load the native client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("chdb", "pyarrow", "numpy", "ptars", "clickhouse_driver", "polars", "pandas", "kopf")

_SCRIPT = """
import asyncio, json, sys
from consumers import cli
from consumers.health import Health
from consumers.otel.backend import open_backend
from consumers.otel.consumer import DECODERS
from consumers.samples import metrics_request, run_trace
from consumers.stats import Stats
from lineagehub.topics import METRICS_TOPIC, SPANS_TOPIC

kind, path = sys.argv[1], sys.argv[2]
args = cli._parser().parse_args(
    ["otel", "--clickhouse-backend", kind, "--chdb-path", path,
     "--clickhouse-url", "clickhouse://127.0.0.1:9/otel"]
)
backend = open_backend(
    args.clickhouse_backend, chdb_path=args.chdb_path, url=args.clickhouse_url,
    database=args.clickhouse_database,
)
consumers = cli._batch_consumers(args, backend, Stats("otel"), Health())
assert consumers
if kind == "chdb":
    asyncio.run(backend.setup())
heavy = set(json.loads(sys.argv[3]))

def loaded():
    return sorted({m.split(".")[0] for m in sys.modules} & heavy)

at_rest = loaded()
DECODERS[SPANS_TOPIC](run_trace("r").SerializeToString())
DECODERS[METRICS_TOPIC](metrics_request().SerializeToString())
print(json.dumps({"at_rest": at_rest, "decoding": loaded()}))
"""


def _loaded(kind: str, tmp_path: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, kind, str(tmp_path / "chdb"), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    out: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_the_native_backend_loads_neither_chdb_nor_arrow_at_rest(tmp_path: Path) -> None:
    """Only the native client at rest; the Arrow decoders come with the first record
    (which also shows the check sees what a process loads), chdb never."""
    seen = _loaded("native", tmp_path)
    assert seen["at_rest"] == ["clickhouse_driver"]
    assert set(seen["decoding"]) == {"clickhouse_driver", "numpy", "ptars", "pyarrow"}


def test_the_chdb_backend_loads_no_native_client_and_no_parser_at_rest(tmp_path: Path) -> None:
    """chdb (which brings pyarrow and numpy) is the store; the protobuf-to-Arrow parser
    waits for the first record, the native client is never loaded."""
    seen = _loaded("chdb", tmp_path)
    assert seen["at_rest"] == ["chdb", "numpy", "pyarrow"]
    assert seen["decoding"] == ["chdb", "numpy", "ptars", "pyarrow"]
