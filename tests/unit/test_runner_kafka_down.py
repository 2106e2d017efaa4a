"""A stage whose Kafka cannot be reached (a closed loopback port, the real librdkafka
client): the sends waiting fail with the broker's error as soon as the client knows,
not when the records time out; the stage process still does its work, says so in one
line and exits 0, or 1 when its telemetry is required."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from lineagehub.librdkafka_producer import KafkaUnreachable
from pipeline_runner.emit import KafkaEmitter
from tests.unit.test_runner_process import run_stage_process


def _closed_port() -> str:
    """A loopback address nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _the_one_warning(
    proc: subprocess.CompletedProcess[str], workdir: Path, bootstrap: str, code: int
) -> str:
    """The stage did its work (5 rows out) and exited `code`, saying in one warning
    line that it could not publish to `bootstrap`: that line."""
    assert proc.returncode == code, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert f"could not publish to kafka {bootstrap}" in warnings[0]
    assert json.loads((workdir / "termination").read_text())["recordsOut"] == 5
    return warnings[0]


async def test_a_send_fails_with_the_brokers_error_not_a_timeout() -> None:
    emitter = KafkaEmitter(_closed_port())
    try:
        with pytest.raises(KafkaUnreachable, match="_ALL_BROKERS_DOWN"):
            await emitter.send("any-topic", "k", b"record")
        # Later sends fail the same way at once, without queueing anything.
        with pytest.raises(KafkaUnreachable, match="_ALL_BROKERS_DOWN"):
            await emitter.send("any-topic", "k", b"record")
    finally:
        await emitter.close()


@pytest.mark.parametrize(("required", "code"), [("", 0), ("1", 1)])
def test_a_stage_process_without_kafka_does_its_work_and_says_so_once(
    tmp_path: Path, required: str, code: int
) -> None:
    bootstrap = _closed_port()
    proc = run_stage_process(
        tmp_path,
        ["-m", "pipeline_runner", "extract"],
        env={"KAFKA_BOOTSTRAP": bootstrap, "LINEAGEHUB_TELEMETRY_REQUIRED": required},
    )
    warning = _the_one_warning(proc, tmp_path, bootstrap, code)
    assert "_ALL_BROKERS_DOWN" in warning
    # librdkafka logs nothing of its own on stderr (the one line says it all)
    assert "rdkafka" not in proc.stderr, proc.stderr


#: A stage process whose Kafka client cannot be made (librdkafka's package missing).
WITHOUT_THE_CLIENT = (
    "import sys\n"
    "sys.modules['confluent_kafka'] = None  # import of confluent_kafka fails\n"
    "from pipeline_runner.stage_entry import stage_process\n"
    "stage_process(['extract', '--emit', 'kafka'])\n"
)


@pytest.mark.parametrize(("required", "code"), [("", 0), ("1", 1)])
def test_a_kafka_client_that_cannot_be_made_does_not_end_the_work(
    tmp_path: Path, required: str, code: int
) -> None:
    """The client is made while the work already runs: its failure is reported as an
    unreachable broker's is (one warning line once the work is done, exit 1 when the
    telemetry is required), never by ending the process under the work."""
    bootstrap = _closed_port()
    proc = run_stage_process(
        tmp_path,
        ["-c", WITHOUT_THE_CLIENT],
        env={"KAFKA_BOOTSTRAP": bootstrap, "LINEAGEHUB_TELEMETRY_REQUIRED": required},
    )
    warning = _the_one_warning(proc, tmp_path, bootstrap, code)
    assert "ModuleNotFoundError" in warning
    assert "Traceback" not in proc.stderr, proc.stderr
