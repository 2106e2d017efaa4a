"""The operator's run-level lineage and root span when Kafka is down or hangs: a reconcile
step is held at most the publish bound, and what is lost is counted and said."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.run_telemetry import RunTelemetry

from lineagehub.api.pipelinerun import PipelineRun
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def finished_run() -> PipelineRun:
    return PipelineRun.model_validate(
        {
            "metadata": {"name": "orders", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
            },
            "status": {
                "phase": "Succeeded",
                "runId": "019ac0f0-0000-7000-8000-000000000001",
                "traceId": "0af7651916cd43dd8448eb211c80319c",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "startTime": "2026-11-26T11:59:00Z",
            },
        }
    )


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def refused_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: connections are refused


@pytest.mark.parametrize("broker", ["silent", "refused"])
def test_kafka_down_holds_reconcile_at_most_the_bound_and_counts_the_loss(
    broker: str, silent_broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = silent_broker if broker == "silent" else refused_port()
    telemetry = RunTelemetry(OperatorConfig(kafka_bootstrap=bootstrap), publish_timeout_s=1.0)
    run = finished_run()

    async def scenario() -> None:
        await telemetry.emit(run, "START", T0)
        await telemetry.emit(run, "COMPLETE", T0)
        await asyncio.wait_for(telemetry.stop(), 30)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert telemetry.lost == {"START": 1, "COMPLETE": 1}
    said = [r.getMessage() for r in caplog.records if "could not publish" in r.getMessage()]
    assert len(said) == 2
    assert "root span" in said[1] and "2 run-level events lost" in said[1]
    if broker == "silent":
        # The hung broker was cut off by the publish bound, not by the client's own
        # 15 s request timeout: the reconcile step was held for the bound only.
        assert all("TimeoutError" in message for message in said), said


class _CancellingPublisher:
    """Kafka's last answer (the root span's) handed back while the reconcile step is
    cancelled (an operator shutting down). `asyncio.wait_for` on Python 3.11 ran the
    publish as a task of its own and dropped a cancel that reached the step once that
    task was done (gh-86296): the step went on as if never cancelled."""

    def __init__(self) -> None:
        self.caller: asyncio.Task[None] | None = None
        self.sent: list[str] = []

    async def send(self, topic: str, key: str, value: bytes) -> None:
        self.sent.append(topic)
        if topic == SPANS_TOPIC:
            assert self.caller is not None
            self.caller.cancel()


def test_a_cancel_arriving_as_kafka_answers_cancels_the_step() -> None:
    telemetry = RunTelemetry(OperatorConfig(kafka_bootstrap="127.0.0.1:9"))
    publisher = _CancellingPublisher()
    telemetry._publisher = publisher  # type: ignore[assignment]

    async def scenario() -> None:
        step = asyncio.create_task(telemetry.emit(finished_run(), "COMPLETE", T0))
        publisher.caller = step
        with pytest.raises(asyncio.CancelledError):
            await step

    asyncio.run(scenario())
    assert publisher.sent == [LINEAGE_TOPIC, SPANS_TOPIC]
    assert telemetry.lost == {}
