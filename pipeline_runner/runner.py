"""Run one stage end to end: START, the work, COMPLETE or FAIL, spans and metrics,
the termination message.

Publishing is confirmed per record. A broker that cannot be reached does not fail the
data work: the stage warns (one line on stderr), stops trying for the rest of the
stage, and reports it; with `LINEAGEHUB_TELEMETRY_REQUIRED=1` that makes the stage
exit non-zero instead.

The work needs no event loop: `start_stage` starts it in a thread of its own at once,
and only then does the stage import asyncio (imported inside the coroutines here) and
publish START while the work runs (`finish_stage`); `run_stage` does both.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from lineagehub.api.shards import shard_traceparent
from lineagehub.datasets import redact_text
from lineagehub.topics import LINEAGE_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from pipeline_runner import __version__
from pipeline_runner.errors import ErrorKind, StageError, first_line, one_line
from pipeline_runner.lineage import stage_event, to_json
from pipeline_runner.result import StageResult, write_termination_message
from pipeline_runner.settings import Settings
from pipeline_runner.shard_io import current_shard, finish_shard
from pipeline_runner.shard_source import Shard
from pipeline_runner.stages import STAGE_FUNCTIONS
from pipeline_runner.telemetry import (
    ATTR_PIPELINE,
    ATTR_RECORDS_IN,
    ATTR_RECORDS_OUT,
    ATTR_RUN_ID,
    ATTR_STAGE,
    ATTR_STAGE_RUN_ID,
    StageTelemetry,
    TelemetryBatch,
)

if TYPE_CHECKING:
    from lineagehub.api import StageConfig
    from pipeline_runner.emit import Emitter

SEND_TIMEOUT = 30.0


@dataclass
class Delivery:
    """Publishes through an emitter; after the first failure it only counts what is lost."""

    emitter: Emitter
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    sent: int = 0
    lost: int = 0
    error: str | None = None

    async def send(self, topic: str, key: str, value: bytes) -> None:
        import asyncio

        if self.error is not None:
            self.lost += 1
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self.emitter.send(topic, key, value)
            self.sent += 1
        except Exception as exc:  # any broker failure: warn once, keep the data result
            self.lost += 1
            if self.error is not None:  # a send made at the same time failed first
                return
            self.error = one_line(
                f"could not publish to {self.emitter.description} ({topic}): "
                f"{type(exc).__name__}: {first_line(exc)}",
                300,
            )
            print(
                f"warning: {self.error}; lineage and telemetry of this stage are lost",
                file=self.stderr,
            )


@dataclass
class StageRun:
    config: StageConfig
    result: StageResult
    telemetry: TelemetryBatch


def _now() -> datetime:
    return datetime.now(UTC)


def execute(
    cfg: StageConfig,
    settings: Settings,
    tel: StageTelemetry,
    result: StageResult,
    shard: Shard | None = None,
) -> BaseException | None:
    """The stage's work inside its span (a shard's: `shard 2/3 extract`, a child of the
    stage span); returns the error (already put in `result`)."""
    parent_run_id = cfg.parent.run_id if cfg.parent else cfg.run_id
    pipeline = cfg.parent.job if cfg.parent else cfg.openlineage_job
    attributes = {
        ATTR_RUN_ID: parent_run_id,
        ATTR_STAGE: cfg.stage.value,
        ATTR_PIPELINE: pipeline,
        ATTR_STAGE_RUN_ID: cfg.run_id,
        "lineagehub.attempt": cfg.attempt,
        "lineagehub.pipelinerun": cfg.pipeline_run.name,
        "k8s.namespace.name": cfg.pipeline_run.namespace,
    }
    name = f"stage {cfg.stage.value}"
    if cfg.shards > 1:
        name = f"shard {shard.label if shard else '?'} {cfg.stage.value}"
        attributes["lineagehub.shards"] = cfg.shards
        if shard is not None:
            attributes["lineagehub.shard"] = shard.index
    started = time.perf_counter()
    error: BaseException | None = None
    with tel.stage_span(name, attributes) as span:
        try:
            STAGE_FUNCTIONS[cfg.stage](cfg, settings, tel, result)
        except StageError as exc:
            error = exc
            result.error, result.error_kind = exc.reason, exc.kind
        except Exception as exc:  # a bug or an unforeseen failure: still a clean FAIL
            error = exc
            result.error = one_line(
                f"{cfg.stage.value} failed unexpectedly: {type(exc).__name__}: "
                f"{redact_text(first_line(exc))}"
            )
            result.error_kind = ErrorKind.INTERNAL_ERROR
        result.duration_seconds = time.perf_counter() - started
        if result.records_in is not None:
            span.set_attribute(ATTR_RECORDS_IN, result.records_in)
        if result.records_out is not None:
            span.set_attribute(ATTR_RECORDS_OUT, result.records_out)
        if result.error is not None and result.error_kind is not None:
            tel.fail(span, result.error_kind.value, result.error)
    tel.record(
        rows_out=result.records_out if result.ok else None,
        rejected=result.rejected,
        quality_failed=sum(q.failed_rows for q in result.quality if not q.success),
        duration=result.duration_seconds or 0.0,
        bytes_read=result.bytes_read,
        bytes_written=result.bytes_written if result.ok else None,
        ok=result.ok,
    )
    return error


def _shard(cfg: StageConfig) -> Shard | None:
    """This pod's shard; None when the Job gave no valid index (the stage then fails
    with the reason, raised again inside its span)."""
    try:
        return current_shard(cfg)
    except StageError:
        return None


@dataclass
class StartedStage:
    """A stage whose work is under way (`start_stage`)."""

    config: StageConfig
    settings: Settings
    telemetry: StageTelemetry
    result: StageResult
    shard: Shard | None
    #: When the work started: START's event time, and a shard's start in the ledger.
    started_at: datetime
    #: The work's error (already put in `result`), once it is done.
    work: Future[BaseException | None]


def start_stage(
    cfg: StageConfig, settings: Settings, *, traceparent: str | None = None
) -> StartedStage:
    """Start `cfg`'s stage: its telemetry, then its work in a thread of its own, at once.
    Nothing of the publishing (the event loop, START) stands before the work."""
    shard = _shard(cfg)
    parent = traceparent or cfg.traceparent
    if cfg.shards > 1 and parent:
        parent = shard_traceparent(parent, cfg.run_id)
    tel = StageTelemetry(
        settings,
        traceparent=parent,
        resource_attributes={
            "service.version": __version__,
            **({"k8s.pod.name": os.environ["POD_NAME"]} if os.environ.get("POD_NAME") else {}),
        },
        metric_attributes={
            ATTR_RUN_ID: cfg.parent.run_id if cfg.parent else cfg.run_id,
            ATTR_STAGE: cfg.stage.value,
            ATTR_PIPELINE: cfg.parent.job if cfg.parent else cfg.openlineage_job,
        },
    )
    result = StageResult(stage=cfg.stage)
    work: Future[BaseException | None] = Future()

    def run() -> None:
        try:
            work.set_result(execute(cfg, settings, tel, result, shard))
        except BaseException as exc:  # handed to the awaiting coroutine, raised there
            work.set_exception(exc)

    started = StartedStage(cfg, settings, tel, result, shard, _now(), work)
    threading.Thread(target=run, name=f"stage-{cfg.stage.value}", daemon=True).start()
    return started


async def finish_stage(
    stage: StartedStage, delivery: Delivery, *, termination_log: str | None = None
) -> StageRun:
    """Publish a started stage's START while its work runs, then (once it is done)
    COMPLETE or FAIL, its spans and metrics, and its termination message. A shard of a
    sharded stage reports its own span under the stage's; START comes from shard 0,
    COMPLETE (the shards summed) from the shard that commits, FAIL from a failed shard."""
    import asyncio

    cfg, tel, result, shard = stage.config, stage.telemetry, stage.result, stage.shard
    # START always goes before COMPLETE or FAIL, which wait for the work.
    if shard is None or shard.index == 0:
        start_event = to_json(stage_event("START", cfg, stage.started_at))
        await delivery.send(LINEAGE_TOPIC, cfg.run_id, start_event)
    error = await asyncio.wrap_future(stage.work)
    if cfg.shards > 1 and shard is not None and result.ok:
        # A shard's span goes first: a shard that would fail for want of it (telemetry
        # required) must not count toward the stage's COMPLETE.
        batch = await _send_telemetry(tel, delivery, [])
        if delivery.error is None or not stage.settings.telemetry_required:
            await _commit_shard(cfg, shard, result, stage.started_at.timestamp(), delivery)
    else:
        sends: list[Awaitable[None]] = []
        event_type = "COMPLETE" if result.ok else "FAIL"
        stack = None
        if error is not None and not isinstance(error, StageError):
            stack = "".join(traceback.format_exception(error))[-8000:]
        event = stage_event(event_type, cfg, _now(), result=result, error=result.error, stack=stack)
        sends.append(
            asyncio.ensure_future(delivery.send(LINEAGE_TOPIC, cfg.run_id, to_json(event)))
        )
        batch = await _send_telemetry(tel, delivery, sends)
    if termination_log is not None:
        write_termination_message(termination_log, result, delivery.stderr)
    return StageRun(config=cfg, result=result, telemetry=batch)


async def run_stage(
    cfg: StageConfig,
    delivery: Delivery,
    settings: Settings,
    *,
    traceparent: str | None = None,
    termination_log: str | None = None,
) -> StageRun:
    """Run `cfg`'s stage (`start_stage`, then `finish_stage`); never raises for a stage
    failure (see `result.error`)."""
    started = start_stage(cfg, settings, traceparent=traceparent)
    return await finish_stage(started, delivery, termination_log=termination_log)


async def _send_telemetry(
    tel: StageTelemetry, delivery: Delivery, sends: list[Awaitable[None]]
) -> TelemetryBatch:
    """The stage's spans and metrics, acknowledged together with `sends` (in flight while
    they are encoded): they go to different topics, with no order to keep."""
    import asyncio

    batch = await asyncio.to_thread(tel.finish)
    sends.append(delivery.send(SPANS_TOPIC, batch.trace_id, batch.spans))
    if batch.metrics is not None:
        sends.append(delivery.send(METRICS_TOPIC, tel.service_name, batch.metrics))
    await asyncio.gather(*sends)
    return batch


async def _commit_shard(
    cfg: StageConfig, shard: Shard, result: StageResult, started: float, delivery: Delivery
) -> None:
    """Record a succeeded shard; the shard that commits sends the stage's COMPLETE (or
    the FAIL its sum calls for) and marks a delivered COMPLETE sent."""
    import asyncio

    def event_of(total: StageResult) -> bytes:
        event_type = "COMPLETE" if total.ok else "FAIL"
        return to_json(stage_event(event_type, cfg, _now(), result=total, error=total.error))

    try:
        commit = await asyncio.to_thread(finish_shard, cfg, shard, result, started, event_of)
    except (OSError, ValueError) as exc:  # the workspace failed under the ledger
        result.error = one_line(f"shard {shard.label} could not record its result: {exc}")
        result.error_kind = ErrorKind.INTERNAL_ERROR
        await delivery.send(LINEAGE_TOPIC, cfg.run_id, event_of(result))
        return
    if commit is None:
        return
    if not commit.total.ok:  # the sum fails the stage
        result.error, result.error_kind = commit.total.error, commit.total.error_kind
    await delivery.send(LINEAGE_TOPIC, cfg.run_id, commit.event)
    if commit.total.ok and delivery.error is None:
        await asyncio.to_thread(commit.ledger.mark_sent)
