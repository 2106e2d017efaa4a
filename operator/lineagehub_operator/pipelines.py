"""kopf wiring for Pipelines: an index of runs by the Pipeline they run, and one daemon
per Pipeline that keeps its status, creates its scheduled runs and deletes old ones.

The daemon asks `schedule.plan()` what to do with the clock read once per pass, does
it, writes the status, and sleeps until the next schedule time or until the Pipeline or
one of its runs changes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from logging import Logger, LoggerAdapter
from typing import Any

import kopf
from pydantic import ValidationError

from lineagehub.api import pipeline as api
from lineagehub.api.pipelinerun import (
    API_GROUP,
    API_GROUP_VERSION,
    API_VERSION,
    KIND,
    PLURAL,
    Phase,
    format_time,
)
from lineagehub.datasets import redact_text
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.kube import KubeApi
from lineagehub_operator.naming import LABEL_MANAGED_BY, MANAGED_BY, child_name, label_value
from lineagehub_operator.resolve import pipeline_name
from lineagehub_operator.schedule import PipelinePlan, SeenRun, plan, unsaid
from lineagehub_operator.waiting import newer, sleep_until_woken

LABEL_PIPELINE = f"{API_GROUP}/pipeline"
Key = tuple[str, str]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _owned_by_its_pipeline(body: kopf.Body | dict[str, Any]) -> bool:
    """The Pipeline the run refers to is one of its owners."""
    name = pipeline_name(body)
    return name is not None and any(
        ref.get("kind") == api.KIND
        and ref.get("apiVersion") == API_GROUP_VERSION
        and ref.get("name") == name
        for ref in (body.get("metadata") or {}).get("ownerReferences") or []
    )


def seen_run(body: kopf.Body | dict[str, Any]) -> SeenRun:
    """What the schedule needs to know of a run, read leniently from its body. A run is
    the schedule's (`scheduled` set) when the Pipeline it refers to owns it and it carries
    its schedule time: a copy of the annotation made by hand does not count."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    try:
        phase: Phase | None = Phase(status.get("phase") or "")
    except ValueError:
        phase = None
    return SeenRun(
        name=meta.get("name") or "",
        phase=phase,
        created=_time(meta.get("creationTimestamp")) or datetime.now(UTC),
        scheduled=_time((meta.get("annotations") or {}).get(api.SCHEDULED_TIME_ANNOTATION))
        if _owned_by_its_pipeline(body)
        else None,
        completed=_time(status.get("completionTime")),
    )


def scheduled_run_name(pipeline: str, when: datetime) -> str:
    """`<pipeline>-<minutes since the epoch>`, as CronJob names its Jobs: the same time
    always gives the same name, so a restarted operator cannot create a run twice."""
    return child_name(pipeline, str(int(when.timestamp()) // 60))


def scheduled_run(
    pipeline: api.Pipeline, when: datetime, params: dict[str, str] | None = None
) -> dict[str, Any]:
    """The PipelineRun the schedule creates for `when` with `params` (the Pipeline's
    scheduleParams filled in for `when`): owned by the Pipeline, so deleting the Pipeline
    deletes its scheduled runs and, through theirs, their Jobs."""
    name = pipeline.metadata.name or ""
    spec: dict[str, Any] = {"pipelineRef": {"name": name}}
    if params:
        spec["params"] = dict(params)
    return {
        "apiVersion": API_GROUP_VERSION,
        "kind": KIND,
        "metadata": {
            "name": scheduled_run_name(name, when),
            "namespace": pipeline.metadata.namespace,
            "labels": {LABEL_PIPELINE: label_value(name), LABEL_MANAGED_BY: MANAGED_BY},
            "annotations": {api.SCHEDULED_TIME_ANNOTATION: format_time(when)},
            "ownerReferences": [
                {
                    "apiVersion": API_GROUP_VERSION,
                    "kind": api.KIND,
                    "name": name,
                    "uid": pipeline.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


@kopf.index(API_GROUP, API_VERSION, PLURAL)
def runs_by_pipeline(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Key, SeenRun] | None:
    name = pipeline_name(body)
    if name is None:
        return None
    return {(namespace or "", name): seen_run(body)}


def _wake(memo: Any, key: Key) -> None:
    waker = memo.setdefault("pipeline_wakers", {}).get(key)
    if waker is not None:
        waker.set()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
def pipeline_run_changed(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    name = pipeline_name(body)
    if name is not None:
        _wake(memo, (namespace or "", name))


@kopf.on.event(API_GROUP, API_VERSION, api.PLURAL)
def pipeline_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    _wake(memo, (namespace or "", name))


async def _act(
    kube: KubeApi,
    pipeline: api.Pipeline,
    body: kopf.Body,
    out: PipelinePlan,
    said: dict[str, str],
) -> None:
    namespace = pipeline.metadata.namespace or ""
    for name in out.cancel:
        await kube.cancel_run(namespace, name)
    if out.create is not None:
        await kube.create_run(scheduled_run(pipeline, out.create, out.params))
    for name in out.delete:
        await kube.delete_run(namespace, name)
    for event in unsaid(out.events, said):
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


@kopf.daemon(API_GROUP, API_VERSION, api.PLURAL, cancellation_timeout=10)
async def keep_pipeline(
    *,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: Any,
    stopped: kopf.DaemonStopped,
    logger: Logger | LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    runs: kopf.Index[Key, SeenRun] = kwargs["runs_by_pipeline"]
    key = (namespace or "", name)
    waker = memo.setdefault("pipeline_wakers", {}).setdefault(key, asyncio.Event())
    config: OperatorConfig = memo["config"]
    kube: KubeApi = memo["api"]
    latest: dict[str, Any] = {}
    refused = ""
    said: dict[str, str] = {}
    try:
        while not stopped:
            waker.clear()
            current = newer(body, latest)
            try:
                pipeline = api.Pipeline.model_validate(current)
            except ValidationError as err:
                message = redact_text(str(err))[:1000]
                if message != refused:  # said once per version of the problem
                    logger.warning("Pipeline %s/%s is invalid: %s", namespace, name, message)
                    kopf.event(body, type="Warning", reason="InvalidPipeline", message=message)
                    refused = message
                await sleep_until_woken(waker, stopped, config.poll_seconds)
                continue
            now = datetime.now(UTC)
            created = _time(current["metadata"].get("creationTimestamp")) or now
            out = plan(pipeline, list(runs.get(key, [])), now, created)
            await _act(kube, pipeline, body, out, said)
            if out.status != pipeline.status:
                wire = out.status.model_dump(mode="json", by_alias=True, exclude_none=False)
                latest = await kube.patch_pipeline_status(key[0], name, wire)
            timeout = config.poll_seconds if out.requeue_after is None else out.requeue_after
            await sleep_until_woken(waker, stopped, max(0.05, min(timeout, config.poll_seconds)))
    finally:
        memo["pipeline_wakers"].pop(key, None)
