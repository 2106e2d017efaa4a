"""How the shards of a stage agree that it is done, when deliveries fail or a pod dies:
a stage that fails never shows COMPLETE, and a stage that succeeds always gets one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lineagehub.api import StageConfig, StageName
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from pipeline_runner import cli
from pipeline_runner.emit import MemoryEmitter
from tests.unit.test_pipeline_shards import Harness, _csv

SHARDS = 3


@pytest.fixture
def harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Harness:
    return Harness(tmp_path, monkeypatch, capsys)


class PodKilled(BaseException):
    """The pod dies mid-send: nothing after it runs (not an error the runner handles)."""


@dataclass
class Broker(MemoryEmitter):
    """Keeps what is delivered; refuses records of `refuse` topic, or dies on a lineage
    event of type `die_on`."""

    refuse: str | None = None
    die_on: str | None = None
    tried: list[bytes] = field(default_factory=list)

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if topic == self.refuse:
            raise ConnectionError("broker unreachable")
        if topic == LINEAGE_TOPIC and json.loads(value)["eventType"] == self.die_on:
            self.tried.append(value)
            raise PodKilled
        await super().send(topic, key, value)


def run_shard(h: Harness, cfg: StageConfig, index: int, broker: Broker) -> int:
    """Runs shard `index` as its pod would, publishing to `broker`."""
    h.mp.setattr(cli, "_emitter", lambda *_: broker)
    return h.run(cfg, index)[0]


def types(broker: Broker) -> list[str]:
    return [e["eventType"] for e in broker.lineage()]


def all_but_the_last_done(h: Harness, name: str) -> tuple[StageConfig, Broker]:
    """An extract of SHARDS shards whose shards but the last succeeded."""
    cfg = h.config(StageName.EXTRACT, _csv(h.tmp), SHARDS, 1, name)
    broker = Broker()
    assert [run_shard(h, cfg, i, broker) for i in range(SHARDS - 1)] == [0] * (SHARDS - 1)
    assert "COMPLETE" not in types(broker)
    return cfg, broker


def test_a_shard_that_cannot_deliver_its_span_does_not_count_toward_complete(
    harness: Harness,
) -> None:
    harness.mp.setenv("LINEAGEHUB_TELEMETRY_REQUIRED", "1")
    cfg = harness.config(StageName.EXTRACT, _csv(harness.tmp), SHARDS, 1, "spanless")
    broker = Broker()
    assert run_shard(harness, cfg, 0, Broker(refuse=SPANS_TOPIC)) == 1
    assert [run_shard(harness, cfg, i, broker) for i in (1, 2)] == [0, 0]
    # Shard 0 failed: were its retries to run out, the Job would fail, so no COMPLETE yet.
    assert "COMPLETE" not in types(broker)
    assert run_shard(harness, cfg, 0, broker) == 0  # its retry delivers, then commits
    assert types(broker).count("COMPLETE") == 1


def test_a_commit_cut_short_is_resent_by_the_retry_identically_and_only_once(
    harness: Harness,
) -> None:
    cfg, broker = all_but_the_last_done(harness, "cut")
    dying = Broker(die_on="COMPLETE")
    with pytest.raises(PodKilled):
        run_shard(harness, cfg, 2, dying)
    (attempted,) = dying.tried
    assert "COMPLETE" not in types(broker)
    # Another shard's retry does not commit; the claimant's retry resends the same event.
    assert run_shard(harness, cfg, 1, broker) == 0
    assert "COMPLETE" not in types(broker)
    assert run_shard(harness, cfg, 2, broker) == 0
    completes: list[dict[str, Any]] = [e for e in broker.lineage() if e["eventType"] == "COMPLETE"]
    assert completes == [json.loads(attempted)]  # same eventTime: the stores take it once
    assert run_shard(harness, cfg, 2, broker) == 0  # once sent, never again
    assert types(broker).count("COMPLETE") == 1


def test_a_commit_whose_complete_is_not_delivered_fails_the_pod_for_a_retry(
    harness: Harness,
) -> None:
    harness.mp.setenv("LINEAGEHUB_TELEMETRY_REQUIRED", "1")
    cfg, broker = all_but_the_last_done(harness, "undelivered")

    class LineageDown(Broker):
        async def send(self, topic: str, key: str, value: bytes) -> None:
            if topic == LINEAGE_TOPIC:
                raise ConnectionError("broker unreachable")
            await super().send(topic, key, value)

    assert run_shard(harness, cfg, 2, LineageDown()) == 1
    assert run_shard(harness, cfg, 2, broker) == 0
    assert types(broker).count("COMPLETE") == 1
