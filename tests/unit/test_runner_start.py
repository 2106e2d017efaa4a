"""A stage's work starts before anything only its publishing needs: the event loop
(asyncio), START's encoding, the metrics' instruments and the OTLP encoders come
while it runs. Its start-up runs with the cyclic collector off; the work runs with it
on and start-up's objects frozen. Asserted on what a real stage process had loaded
and how its collector stood when its work began, not on time."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lineagehub.api import STAGE_CONFIG_ENV, SourceSpec, StageName
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from pipeline_runner import stages
from pipeline_runner.emit import MemoryEmitter
from pipeline_runner.runner import Delivery, run_stage
from pipeline_runner.settings import Settings
from tests.unit.test_runner_imports import run_python
from tests.unit.test_runner_stages import make_config, write_source

#: Loaded only once the work has started (or by the work itself, after its span began):
#: the emitter too is made while the work runs.
AFTER_THE_WORK_STARTS = (
    "asyncio",
    "lineagehub.otlp_spans",
    "pipeline_runner.stage_metrics",
    "pipeline_runner.emit",
)
#: What `import polars` would load, with `importlib.metadata`, `hashlib` (OpenSSL's
#: `_hashlib`) and `subprocess`, before a stage's work (`stage_entry.defer_import`).
DEFERRED = ("importlib.metadata._meta", "email.message", "zipfile", "_hashlib", "_posixsubprocess")
#: ... and, publishing to Kafka, its client: made on the stage's main thread while the
#: work runs, not before it.
KAFKA_AFTER_THE_WORK_STARTS = ("confluent_kafka", "lineagehub.librdkafka_producer")

#: Runs a stage the way its container does (`stage_process`) or inside another program
#: (`stage_main`), noting in SPY_OUT what was loaded, and how the collector stood, when
#: the stage's work was started (its thread, `stage-<name>`, started by `start_stage`).
#: The spy imports nothing of the stage's work itself (polars, the runner): the stage
#: imports them as it would without it.
SPY = """
import gc, json, os, sys, threading
from pipeline_runner import cli

real_start, real_process = threading.Thread.start, cli.stage_process
start_up = {}

def spy(thread):
    if thread.name.startswith("stage-") and not os.path.exists(os.environ["SPY_OUT"]):
        seen = {"modules": sorted(sys.modules), "enabled": gc.isenabled(),
                "frozen": gc.get_freeze_count(),
                "enabled_in_start_up": start_up.get("enabled")}
        with open(os.environ["SPY_OUT"], "w") as f:
            json.dump(seen, f)
    return real_start(thread)

def process(*args, **kwargs):  # called as the stage's start-up begins
    start_up["enabled"] = gc.isenabled()
    return real_process(*args, **kwargs)

threading.Thread.start, cli.stage_process = spy, process
{run}
"""
AS_A_CONTAINER = (
    "from pipeline_runner.stage_entry import stage_process\n"
    "stage_process(['extract', '--emit', 'console'])"
)
#: As a Job's container runs it: publishing to Kafka (KAFKA_BOOTSTRAP).
AS_A_PUBLISHING_CONTAINER = (
    "from pipeline_runner.stage_entry import stage_process\n"
    "stage_process(['extract', '--emit', 'kafka'])"
)
INSIDE_A_PROGRAM = (
    "from pipeline_runner.cli import stage_main\n"
    "sys.exit(stage_main(['extract', '--emit', 'console']))"
)


def _stage_with_spy(
    tmp_path: Path, run: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    source = write_source(tmp_path)
    cfg = make_config(
        tmp_path, StageName.EXTRACT, source=SourceSpec(uri=f"file://{source}", format="csv")
    )
    spy_out = tmp_path / "spy.json"
    proc = run_python(
        SPY.replace("{run}", run),
        {
            STAGE_CONFIG_ENV: cfg.to_env_value(),
            "LINEAGEHUB_TERMINATION_LOG": str(tmp_path / "termination"),
            "SPY_OUT": str(spy_out),
            **(env or {}),
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "termination").read_text())["recordsOut"] == 5
    return proc, json.loads(spy_out.read_text())


def test_a_stage_process_starts_its_work_before_its_publishing_is_loaded(
    tmp_path: Path,
) -> None:
    proc, seen = _stage_with_spy(tmp_path, AS_A_CONTAINER)
    loaded = [m for m in (*AFTER_THE_WORK_STARTS, *DEFERRED) if m in seen["modules"]]
    assert not loaded, f"loaded before the work started: {loaded}"
    assert "pipeline_runner.runner" in seen["modules"]  # the spy saw the stage's process
    # ... and each came afterwards: START and COMPLETE, spans and metrics were published
    assert '"eventType": "START"' in proc.stdout or '"eventType":"START"' in proc.stdout
    assert "[otel-spans" in proc.stdout and "[otel-metrics" in proc.stdout


def test_a_stage_process_publishes_each_record_once_start_first(tmp_path: Path) -> None:
    """START, then COMPLETE (which waits for the work), each once; one record of spans
    holding the stage's span, one of metrics: the start-up's order loses none."""
    proc, _ = _stage_with_spy(tmp_path, AS_A_CONTAINER)
    lineage = [
        json.loads(line.split("] ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith(f"[{LINEAGE_TOPIC} ")
    ]
    assert [e["eventType"] for e in lineage] == ["START", "COMPLETE"], proc.stdout
    assert lineage[0]["eventTime"] <= lineage[1]["eventTime"]
    spans = [line for line in proc.stdout.splitlines() if line.startswith(f"[{SPANS_TOPIC} ")]
    assert len([s for s in spans if " span 'stage extract' " in s]) == 1, proc.stdout
    keys = {line.split("key=")[1].split("]")[0] for line in spans}
    assert len(keys) == 1  # one trace, sent as one record
    assert "lineagehub.stage.duration" in proc.stdout


def _closed_port() -> str:
    """A loopback address nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_publishing_stage_starts_its_work_before_its_kafka_client_is_made(
    tmp_path: Path,
) -> None:
    """The Kafka client (librdkafka, asyncio, the producer) is made while the work runs;
    its failure (here no broker at a closed port) is still reported once the work is
    done, in the one warning line, and the work's result stands."""
    bootstrap = _closed_port()
    proc, seen = _stage_with_spy(
        tmp_path, AS_A_PUBLISHING_CONTAINER, env={"KAFKA_BOOTSTRAP": bootstrap}
    )
    assert "pipeline_runner.runner" in seen["modules"]  # the spy saw the stage's process
    early = [
        m for m in (*AFTER_THE_WORK_STARTS, *KAFKA_AFTER_THE_WORK_STARTS) if m in seen["modules"]
    ]
    assert not early, f"loaded before the work started: {early}"
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert f"could not publish to kafka {bootstrap} ({LINEAGE_TOPIC})" in warnings[0]
    assert "_ALL_BROKERS_DOWN" in warnings[0]


def test_the_work_runs_with_the_collector_on_and_start_up_frozen(tmp_path: Path) -> None:
    _, seen = _stage_with_spy(tmp_path, AS_A_CONTAINER)
    assert seen["enabled_in_start_up"] is False
    assert seen["enabled"] is True
    # polars and the runner's modules make some 38,000 objects the collector tracks
    assert seen["frozen"] > 20_000, seen["frozen"]


def test_a_stage_run_inside_a_program_leaves_its_collector_alone(tmp_path: Path) -> None:
    _, seen = _stage_with_spy(tmp_path, INSIDE_A_PROGRAM)
    assert seen["enabled"] is True
    assert seen["frozen"] == 0


class Abort(BaseException):
    """Not an Exception: the work does not turn it into a failed stage."""


async def test_what_escapes_the_work_is_raised_where_the_stage_is_awaited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def abort(*_: object) -> None:
        raise Abort("stop")

    monkeypatch.setitem(stages.STAGE_FUNCTIONS, StageName.EXTRACT, abort)
    write_source(tmp_path)
    emitter = MemoryEmitter()
    with pytest.raises(Abort, match="stop"):
        # bounded: a work thread that dropped it would leave the stage waiting for ever
        await asyncio.wait_for(
            run_stage(make_config(tmp_path, StageName.EXTRACT), Delivery(emitter), Settings()),
            30,
        )
    assert [json.loads(v)["eventType"] for t, _, v in emitter.records if t == LINEAGE_TOPIC] == [
        "START"
    ]


#: In a fresh interpreter: `importlib.metadata` deferred, polars imported, then used.
DEFERRED_THEN_USED = """
import sys, threading
from pipeline_runner.stage_entry import defer_import
defer_import("importlib.metadata")
defer_import("subprocess")  # polars imports it too
defer_import("threading")  # imported already: left alone
defer_import("importlib.no_such_module")  # not found: left alone
defer_import("no_such_package.module")  # its package not imported: left alone
assert "importlib.no_such_module" not in sys.modules
assert "no_such_package.module" not in sys.modules
assert type(sys.modules["threading"]).__name__ == "module"
import polars
import importlib.metadata
stand_in = importlib.metadata
assert type(stand_in).__name__ == "_ImportedOnFirstUse"
assert "importlib.metadata._meta" not in sys.modules and "email.message" not in sys.modules
import importlib.util
assert importlib.util.find_spec("importlib.metadata").name == "importlib.metadata"
# First use, from several threads at once: each gets the one real module's names.
found = []
def use():
    from importlib.metadata import version
    found.append(version("polars"))
threads = [threading.Thread(target=use) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
assert found == [polars.__version__] * 8, found
real = sys.modules["importlib.metadata"]
assert type(real).__name__ == "module" and importlib.metadata is real
assert stand_in.version("polars") == polars.__version__  # an early holder still works
assert stand_in.PackageNotFoundError is real.PackageNotFoundError
import importlib.metadata as again
assert again is real
# A top-level module the same way.
import subprocess
assert type(subprocess).__name__ == "_ImportedOnFirstUse"
assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
assert type(sys.modules["subprocess"]).__name__ == "module"
print("ok")
"""


def test_a_deferred_module_is_imported_whole_on_first_use() -> None:
    proc = run_python(DEFERRED_THEN_USED)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
