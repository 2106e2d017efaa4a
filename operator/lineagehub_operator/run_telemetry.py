"""The run-level OpenLineage run and root span, published to Kafka by the operator."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from datetime import datetime

from lineagehub.api.pipelinerun import (
    CONDITION_SUCCEEDED,
    PipelineRun,
    PipelineRunStatus,
    StageStatus,
)
from lineagehub.datasets import dataset_of
from lineagehub.telemetry import openlineage_json as ol
from lineagehub.telemetry.lineage import run_event
from lineagehub.telemetry.publisher import KafkaPublisher
from lineagehub.telemetry.spans import FixedSpan, caller_context, encode, parse_traceparent
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from lineagehub_operator import shards
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.manifests import openlineage_names

SERVICE = "lineage-hub-operator"
log = logging.getLogger(__name__)


#: How long one publish may hold a reconcile step; Kafka down or slow costs at most this.
PUBLISH_TIMEOUT_S = 10.0


def pipeline_attribute(run: PipelineRun) -> dict[str, str]:
    """`lineagehub.pipeline.name` on the root span of a run of a Pipeline: the trace
    links to the Pipeline, as its lineage does through the shared job."""
    ref = run.spec.pipeline_ref
    return {"lineagehub.pipeline.name": ref.name} if ref is not None else {}


def with_rerun_parent(run: PipelineRun, payload: bytes) -> bytes:
    """A re-run's run-level event names the run it re-runs as its parent (the OpenLineage
    parent run facet), so its lineage leads back to the original."""
    earlier = run.status.rerun_of if run.status else None
    if earlier is None:
        return payload
    event = json.loads(payload)
    parent_run = {"runId": earlier.run_id, "facets": {}}
    parent_job = {"namespace": earlier.namespace, "name": earlier.job, "facets": {}}
    event["run"].setdefault("facets", {})["parent"] = ol.facet(
        "ParentRunFacet",
        {"run": parent_run, "job": parent_job, "root": {"run": parent_run, "job": parent_job}},
    )
    return ol.to_json(event)


def event_time(status: PipelineRunStatus, event_type: str, now: datetime) -> datetime:
    """A run-level event's time, from the run's persisted status: START at the run's
    start, the end events at its end (`now` only when the status has no time). A pass
    that sends an event again (a restart finding the first stage running without its
    Job, or a status write lost) sends it with the same time, so the same bytes."""
    if event_type == "START":
        return status.start_time_precise or status.start_time or now
    return status.completion_time_precise or status.completion_time or now


def run_event_payload(
    run: PipelineRun, event_type: str, namespace: str, job: str, now: datetime
) -> bytes:
    """The run-level event's JSON. Everything in it comes from the run (its spec and
    its status: run id, times, trace, parent), nothing from the pass that sends it."""
    status = run.status
    assert status is not None and status.run_id is not None, "the run's ids come first"
    condition = status.condition(CONDITION_SUCCEEDED)
    error = condition.message if event_type in {"FAIL", "ABORT"} and condition else None
    payload = run_event(
        event_type,
        run_id=status.run_id,
        namespace=namespace,
        job=job,
        event_time=event_time(status, event_type, now),
        inputs=[dataset_of(run.spec.source.uri)],
        outputs=[dataset_of(run.spec.sink.uri)],
        error=error,
        traceparent=status.traceparent,
    )
    return with_rerun_parent(run, payload)


class RunTelemetry:
    def __init__(
        self, config: OperatorConfig, publish_timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> None:
        self._config = config
        self._publisher = (
            KafkaPublisher(config.kafka_bootstrap, SERVICE) if config.kafka_bootstrap else None
        )
        self.publish_timeout_s = publish_timeout_s
        #: Run-level events that never reached Kafka, by event type (said in the log too).
        self.lost: Counter[str] = Counter()

    async def start(self) -> None:
        """Say once when Kafka is not configured; connecting waits for the first event."""
        if self._publisher is None:
            log.warning("KAFKA_BOOTSTRAP is not set: run-level lineage and root spans are off")

    async def emit(self, run: PipelineRun, event_type: str, now: datetime) -> None:
        """Publish, never blocking reconciliation: a Kafka outage is logged, the run goes on."""
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self._emit(run, event_type, now)
        except Exception as err:  # TimeoutError included: a hanging broker
            self.lost[event_type] += 1
            what = "its root span too" if event_type != "START" else "no span yet"
            log.warning(
                "could not publish the %s event of %s/%s to Kafka at %s within %.0f s (%s); "
                "lost: the run-level %s event (%s); %d run-level events lost so far",
                event_type,
                run.metadata.namespace,
                run.metadata.name,
                self._config.kafka_bootstrap,
                self.publish_timeout_s,
                f"{type(err).__name__}: {err}",
                event_type,
                what,
                sum(self.lost.values()),
            )

    async def emit_stage_span(self, run: PipelineRun, stage: StageStatus) -> None:
        """Publish a sharded stage's span (its shards' parent), made from the stage's
        recorded times only; a Kafka outage is logged."""
        if self._publisher is None:
            return
        span = shards.stage_span(run, stage, openlineage_names(run, self._config)[1])
        if span is None:
            return
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self._publisher.send(SPANS_TOPIC, span.trace_id, encode([span], SERVICE))
        except Exception as err:  # TimeoutError included: a hanging broker
            self.lost["stage span"] += 1
            log.warning(
                "could not publish the span of stage %s of %s/%s to Kafka within %.0f s: %s",
                stage.name.value,
                run.metadata.namespace,
                run.metadata.name,
                self.publish_timeout_s,
                f"{type(err).__name__}: {err}",
            )

    async def stop(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()

    async def _emit(self, run: PipelineRun, event_type: str, now: datetime) -> None:
        """Publish the run's START/COMPLETE/FAIL/ABORT event; at the end also its root span."""
        status = run.status
        if self._publisher is None or status is None or status.run_id is None:
            return
        namespace, job = openlineage_names(run, self._config)
        payload = run_event_payload(run, event_type, namespace, job, now)
        await self._publisher.send(LINEAGE_TOPIC, status.run_id, payload)
        span = end_span(run, event_type, job, now)
        if span is not None:
            await self._publisher.send(SPANS_TOPIC, span.trace_id, encode([span], SERVICE))


def end_span(run: PipelineRun, event_type: str, job: str, now: datetime) -> FixedSpan | None:
    """The root span sent with the run's end event (none with START, or without ids),
    made from the run's persisted status like the event: ending at the event's time."""
    status = run.status
    if event_type == "START" or status is None or not status.traceparent:
        return None
    condition = status.condition(CONDITION_SUCCEEDED)
    error = condition.message if event_type in {"FAIL", "ABORT"} and condition else ""
    end = event_time(status, event_type, now)
    return root_span(run, status.traceparent, job, event_type, end, error)


def root_span(
    run: PipelineRun, traceparent: str, job: str, event_type: str, now: datetime, error: str
) -> FixedSpan:
    """The run's root span, exported once when the run ends, with the ids kept in its
    status. It is the child of the call that created the run when that call's trace is
    the run's (the annotation is read again, so an operator restart keeps the link; an
    annotation edited after the start names another trace and is ignored)."""
    status = run.status
    assert status is not None
    trace_id, span_id = parse_traceparent(traceparent)
    caller = caller_context(run.metadata.annotations)
    return FixedSpan(
        name=f"PipelineRun {run.metadata.name}",
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=caller[1] if caller and caller[0] == trace_id else "",
        start=status.start_time_precise or status.start_time or now,
        end=now,
        ok=event_type == "COMPLETE",
        message=error,
        attributes={
            "lineagehub.run_id": status.run_id or "",
            "lineagehub.pipeline": job,
            "lineagehub.outcome": event_type,
            "k8s.namespace.name": run.metadata.namespace or "",
            "lineagehub.pipelinerun": run.metadata.name or "",
            **pipeline_attribute(run),
        },
    )
