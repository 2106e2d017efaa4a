"""After its work a stage publishes COMPLETE, its spans and its metrics at once (different
topics, no order between them), START still first; a broker failing under those
concurrent sends is reported in one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lineagehub.api import StageName
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from pipeline_runner.emit import MemoryEmitter
from pipeline_runner.runner import Delivery, run_stage
from pipeline_runner.settings import Settings
from tests.unit.test_runner_stages import ORDERS, make_config, write_source

#: Long enough for any healthy send here; reached only if COMPLETE waits for nothing.
GATE_LIMIT_S = 30.0


class Gated(MemoryEmitter):
    """Acknowledges COMPLETE only once the spans have been handed over too: sequential
    sends (COMPLETE acknowledged before the spans are sent) never get past it."""

    def __init__(self) -> None:
        super().__init__()
        self.spans_sent = asyncio.Event()
        self.order: list[str] = []

    async def send(self, topic: str, key: str, value: bytes) -> None:
        kind = topic
        if topic == LINEAGE_TOPIC:
            kind = "START" if b'"START"' in value else "COMPLETE"
        self.order.append(kind)
        if kind == "COMPLETE":
            await asyncio.wait_for(self.spans_sent.wait(), GATE_LIMIT_S)
        if topic == SPANS_TOPIC:
            self.spans_sent.set()
        await super().send(topic, key, value)


async def test_complete_spans_and_metrics_are_in_flight_together(tmp_path: Path) -> None:
    write_source(tmp_path, ORDERS)
    emitter = Gated()
    delivery = Delivery(emitter)
    run = await run_stage(make_config(tmp_path, StageName.EXTRACT), delivery, Settings())
    assert run.result.ok
    assert delivery.error is None and delivery.sent == 4
    assert emitter.order == ["START", "COMPLETE", SPANS_TOPIC, METRICS_TOPIC]


async def test_a_broker_failing_after_start_is_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class GoneAfterStart(MemoryEmitter):
        async def send(self, topic: str, key: str, value: bytes) -> None:
            if self.records:
                raise ConnectionError("broker gone")
            await super().send(topic, key, value)

    write_source(tmp_path, ORDERS)
    delivery = Delivery(GoneAfterStart())
    run = await run_stage(make_config(tmp_path, StageName.EXTRACT), delivery, Settings())
    assert run.result.ok
    assert delivery.sent == 1 and delivery.lost == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broker gone" in err[0], err
