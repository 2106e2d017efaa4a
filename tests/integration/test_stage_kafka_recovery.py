"""The shared librdkafka producer and a stage process across a Kafka outage, against the
stack's broker behind a loopback proxy of the test's own: while the proxy refuses (or
holds without answering) the bootstrap connection the broker cannot be reached; once it
forwards, the broker answers. The broker advertises its own address, so only the
bootstrap connection goes through the proxy.

- A record sent while no broker is reachable, within the producer's grace (a stage's),
  waits for the broker and lands once.
- The outage probe (a metadata request naming one topic) sees the broker come back: the
  producer publishes again, and each metadata request it made named its topic; a topic
  the broker lacks is answered all the same.
- A stage process started while the broker does not answer, which answers only once the
  stage's work is done, delivers every record it emits (lineage START and COMPLETE, its
  spans, its metrics) exactly once, and exits 0 with telemetry required.
The stage that never reaches its broker (one warning line, exit 0 or 1) is
tests/unit/test_runner_kafka_down.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from consumers.testkit import end_offsets
from lineagehub.api import STAGE_CONFIG_ENV, StageName
from lineagehub.librdkafka_producer import KafkaUnreachable, LibrdkafkaProducer
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from tests.conftest import StackHandle
from tests.helpers import wait_until
from tests.kafka_proxy import BrokerProxy
from tests.unit.test_librdkafka_producer_probe import watched
from tests.unit.test_runner_process import ROOT
from tests.unit.test_runner_stages import make_config, write_source

pytestmark = [pytest.mark.dataplane]


@pytest.fixture
def bootstrap(stack: StackHandle) -> str:
    return stack.env["KAFKA_BOOTSTRAP"]


@pytest.fixture
def refusing(bootstrap: str) -> Iterator[BrokerProxy]:
    proxy = BrokerProxy(bootstrap, "refuse")
    yield proxy
    proxy.close()


@pytest.fixture
def silent(bootstrap: str) -> Iterator[BrokerProxy]:
    proxy = BrokerProxy(bootstrap, "hold")
    yield proxy
    proxy.close()


async def read_between(
    bootstrap: str, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record from the `start` offsets up to the `end` ones (an acknowledged
    record is below the end offsets read after its acknowledgement)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        async with asyncio.timeout(60):
            while [tp for tp in start if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                found += [r for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return found


def _event(run_id: str) -> bytes:
    return json.dumps(
        {
            "eventType": "START",
            "eventTime": "2026-01-01T00:00:00.000Z",
            "run": {"runId": run_id},
            "job": {"namespace": "lineagehub-producer-test", "name": "probe-recovery"},
            "inputs": [],
            "outputs": [],
            "producer": "https://github.com/lineagehub/lineage-hub/tests",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        }
    ).encode()


async def test_the_outage_probe_sees_the_broker_come_back(
    bootstrap: str, refusing: BrokerProxy
) -> None:
    producer = LibrdkafkaProducer(refusing.address, "probe-recovery-test")
    requests = watched(producer)
    try:
        with pytest.raises(KafkaUnreachable, match="_ALL_BROKERS_DOWN"):
            await producer.connect(30.0)
        with pytest.raises(KafkaUnreachable, match="_ALL_BROKERS_DOWN"):
            await producer.send(LINEAGE_TOPIC, "k", b"refused")
        # The first probe may start after the refusal was reported (connect's asking
        # thread or the poller's probe): wait for it rather than race it.
        await asyncio.to_thread(wait_until, lambda: requests.topics, timeout=30, every=0.05)
        assert requests.answered == 0

        start = await end_offsets(bootstrap, [LINEAGE_TOPIC])
        refusing.open()
        # The signal: the producer takes records again (its probe got an answer).
        await asyncio.to_thread(
            wait_until, lambda: producer._unreachable is None, timeout=60, every=0.05
        )
        run_id = str(uuid.uuid4())
        await producer.send(LINEAGE_TOPIC, run_id, _event(run_id))
    finally:
        producer.close()
    assert requests.answered >= 1  # the probe's request is what saw the broker back
    assert set(requests.topics) == {LINEAGE_TOPIC}, requests.topics  # never all topics

    end = await end_offsets(bootstrap, [LINEAGE_TOPIC])
    records = await read_between(bootstrap, start, end)
    assert [r.value for r in records if r.key == run_id.encode()] == [_event(run_id)]


async def test_a_record_sent_within_the_grace_waits_for_the_broker_and_lands_once(
    bootstrap: str, refusing: BrokerProxy
) -> None:
    # A refused first connection is "all brokers down" for librdkafka at once; a record
    # sent then (a stage's START while its broker is starting) waits for the broker
    # within the grace instead of being given up with the rest of the stage's records.
    producer = LibrdkafkaProducer(refusing.address, "grace-test", unreachable_grace_s=600.0)
    try:
        await asyncio.to_thread(
            wait_until, lambda: producer._unreachable is not None, timeout=60, every=0.05
        )
        start = await end_offsets(bootstrap, [LINEAGE_TOPIC])
        run_id = str(uuid.uuid4())
        acked = producer.enqueue(LINEAGE_TOPIC, run_id, _event(run_id))  # not refused
        assert not acked.done()
        refusing.open()
        await asyncio.wait_for(acked, 60)
    finally:
        producer.close()
    end = await end_offsets(bootstrap, [LINEAGE_TOPIC])
    records = await read_between(bootstrap, start, end)
    assert [r.value for r in records if r.key == run_id.encode()] == [_event(run_id)]


async def test_a_probe_topic_the_broker_lacks_is_still_an_answer(bootstrap: str) -> None:
    # The stack's broker creates no topic on request: the answer names the topic unknown,
    # and the producer has reached its broker all the same.
    missing = f"lh-no-such-topic-{uuid.uuid4().hex[:8]}"
    producer = LibrdkafkaProducer(bootstrap, "probe-missing-test", probe_topic=missing)
    requests = watched(producer)
    try:
        await producer.connect(30.0)
    finally:
        producer.close()
    assert requests.topics == [missing] and requests.answered == 1


def _start_stage(tmp_path: Path, kafka: str) -> tuple[subprocess.Popen[str], str, str]:
    """The extract stage of `make_config` as a process publishing to `kafka`; returns it
    with the stage's run id and its parent's."""
    write_source(tmp_path)
    cfg = make_config(tmp_path, StageName.EXTRACT)
    assert cfg.parent is not None
    env = {
        **os.environ,
        STAGE_CONFIG_ENV: cfg.to_env_value(),
        "LINEAGEHUB_TERMINATION_LOG": str(tmp_path / "termination"),
        "KAFKA_BOOTSTRAP": kafka,
        "LINEAGEHUB_TELEMETRY_REQUIRED": "1",  # a lost record fails the stage
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_runner", "extract"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return proc, cfg.run_id, cfg.parent.run_id


async def test_a_stage_started_while_the_broker_is_silent_delivers_every_record_once(
    tmp_path: Path, bootstrap: str, silent: BrokerProxy
) -> None:
    topics = [LINEAGE_TOPIC, SPANS_TOPIC, METRICS_TOPIC]
    start = await end_offsets(bootstrap, topics)
    proc, run_id, parent_run_id = _start_stage(tmp_path, silent.address)
    try:
        # The stage's client connects and gets no answer while the stage works (START
        # waits meanwhile); the broker answers once the work's output is in place.
        assert await asyncio.to_thread(silent.attempted.wait, 60), "the stage never connected"
        output = tmp_path / "ws" / "extract.parquet"  # renamed into place when written
        await asyncio.to_thread(wait_until, output.exists, timeout=60, every=0.02)
        assert proc.poll() is None  # still waiting for its acknowledgements
        silent.open()
        _, err = await asyncio.to_thread(proc.communicate, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "warning:" not in err, err
    assert json.loads((tmp_path / "termination").read_text())["recordsOut"] == 5

    mine = (run_id.encode(), parent_run_id.encode())
    by_topic: dict[str, list[bytes]] = {t: [] for t in topics}
    for r in await read_between(bootstrap, start, await end_offsets(bootstrap, topics)):
        if r.value is not None and any(m in r.value for m in mine):
            by_topic[r.topic].append(r.value)
    lineage = [json.loads(v) for v in by_topic[LINEAGE_TOPIC]]
    assert sorted(e["eventType"] for e in lineage) == ["COMPLETE", "START"], lineage
    assert {e["run"]["runId"] for e in lineage} == {run_id}
    (spans,) = by_topic[SPANS_TOPIC]
    names = [
        s.name
        for rs in ExportTraceServiceRequest.FromString(spans).resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert "stage extract" in names and len(names) == len(set(names)), names
    (metrics,) = by_topic[METRICS_TOPIC]
    assert ExportMetricsServiceRequest.FromString(metrics).resource_metrics
