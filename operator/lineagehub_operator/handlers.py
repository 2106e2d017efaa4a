"""kopf wiring: an index of stage Jobs, one daemon per unfinished run, Job events waking it.

The daemon reads (spec, observed Jobs, status), asks `decide()` what to do,
does it, writes the whole status, and sleeps until a Job or the run changes
(or a fallback poll). No handler returns a value: a strict schema would prune it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from datetime import UTC, datetime
from logging import Logger, LoggerAdapter
from typing import Any

import kopf
from pydantic import ValidationError

from lineagehub import selftrace
from lineagehub.api.pipelinerun import (
    API_GROUP,
    API_VERSION,
    CONDITION_LINEAGE_RECORDED,
    CONDITION_TRACE_RECORDED,
    PLURAL,
    TERMINAL_PHASES,
    ConditionStatus,
    Phase,
    PipelineRun,
    PipelineRunStatus,
    Reason,
    StageName,
    new_run_id,
    set_condition,
)
from lineagehub.datasets import redact_text
from lineagehub_operator import (
    kube_tracing,
    metrics,
    policy,
    queue,
    rerun,
    resolve,
    run_telemetry,
    shards,
    verify,
)
from lineagehub_operator.checker import StoreChecker
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.config_repair import ConfigWait, waiting_on_config
from lineagehub_operator.decide import (
    CreateJob,
    Decision,
    DeleteJob,
    DeleteRun,
    EmitRunEvent,
    RecordEvent,
    RunIds,
    accepted,
    decide,
    refuse,
    workspace_lost,
)
from lineagehub_operator.kube import KubeApi, NotOurs, pod_outcome
from lineagehub_operator.manifests import (
    config_map,
    owns_workspace,
    stage_job,
    workspace_claim,
    workspace_claim_name,
)
from lineagehub_operator.naming import FINALIZER, LABEL_MANAGED_BY, MANAGED_BY, config_map_name
from lineagehub_operator.observed import (
    JobState,
    ObservedJob,
    ResultCache,
    observe_job,
    owner_uid,
)
from lineagehub_operator.pod_success import SucceededPod, succeeded_pod, with_pod_success
from lineagehub_operator.run_telemetry import RunTelemetry
from lineagehub_operator.verify_schedule import VerifySchedule
from lineagehub_operator.waiting import CreatedJobs, newer, sleep_until_woken
from lineagehub_operator.workspace_loss import (
    ClaimWait,
    claim_gone,
    lost_message,
    waiting_on_claim,
)

JOB_LABELS = {LABEL_MANAGED_BY: MANAGED_BY}


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: Any, logger: Logger | LoggerAdapter[Any], **_: Any
) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # Finite watch timeouts: a silently stuck watch is re-established.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING  # our own Events say what happened
    config = OperatorConfig.from_env()
    memo["config"] = config
    provider = selftrace.tracer_provider(run_telemetry.SERVICE, config.kafka_bootstrap or "")
    memo["tracer_provider"] = provider
    tracer = provider.get_tracer(kube_tracing.TRACER_NAME) if provider is not None else None
    memo["api"] = KubeApi(timeout=config.api_timeout_seconds, tracer=tracer)
    memo["wakers"] = {}
    memo["results"] = ResultCache()
    telemetry = RunTelemetry(config)
    await telemetry.start()
    memo["telemetry"] = telemetry
    memo["checker"] = StoreChecker(config)
    logger.info("lineage-hub operator started: %s", config)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    await memo["telemetry"].stop()
    await memo["checker"].close()
    if memo.get("tracer_provider") is not None:
        memo["tracer_provider"].shutdown()  # exports the spans the batch still holds


@kopf.index("batch", "v1", "jobs", labels=JOB_LABELS)
def stage_jobs(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], ObservedJob] | None:
    owner = owner_uid(body)
    observed = observe_job(body)
    if owner is None or observed is None:
        return None
    return {(namespace or "", owner): observed}


def _wake(memo: Any, uid: str | None) -> None:
    waker = memo.get("wakers", {}).get(uid)
    if waker is not None:
        waker.set()


@kopf.on.event("batch", "v1", "jobs", labels=JOB_LABELS)
def job_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    _wake(memo, owner_uid(body))


@kopf.index("v1", "pods", labels=JOB_LABELS)
def stage_pods(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], SucceededPod] | None:
    """The stage pods that exited 0, by their Job's uid: a run moves on from a single-pod
    stage as soon as its pod has succeeded (pod_success.py)."""
    pod = succeeded_pod(body)
    return None if pod is None else {(namespace or "", pod.job_uid): pod}


@kopf.index("v1", "pods", labels=JOB_LABELS)
def config_waits(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], ConfigWait] | None:
    """The stage pods whose container cannot be configured, by their Job's uid: the
    run's ConfigMap may be gone (config_repair.py)."""
    wait = waiting_on_config(body)
    return None if wait is None else {(namespace or "", wait.job_uid): wait}


@kopf.index("v1", "pods", labels=JOB_LABELS)
def claim_waits(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], ClaimWait] | None:
    """The stage pods the scheduler cannot place for want of a claim, by their Job's
    uid: the run's workspace claim may be gone (workspace_loss.py)."""
    wait = waiting_on_claim(body)
    return None if wait is None else {(namespace or "", wait.job_uid): wait}


@kopf.on.event("v1", "pods", labels=JOB_LABELS)
def pod_changed(body: kopf.Body, namespace: str | None, memo: Any, **kwargs: Any) -> None:
    """A stage pod that exited 0, that cannot be configured, or that cannot be placed
    for want of a claim, wakes its run's daemon (its owner is the Job, whose owner is
    the run: found in the Jobs' index)."""
    pod = succeeded_pod(body) or waiting_on_config(body) or waiting_on_claim(body)
    if pod is None:
        return
    stage_jobs: kopf.Index[tuple[str, str], ObservedJob] = kwargs["stage_jobs"]
    for (ns, run_uid), jobs in stage_jobs.items():
        if ns == (namespace or "") and any(job.uid == pod.job_uid for job in jobs):
            _wake(memo, run_uid)
            return


@kopf.index(API_GROUP, API_VERSION, PLURAL)
def run_queue(body: kopf.Body, **_: Any) -> dict[str, queue.QueueEntry]:
    """Every run, for the active-run limits."""
    return {"runs": queue.queue_entry(body)}


@kopf.index("v1", "namespaces")
def namespace_limits(name: str, annotations: kopf.Annotations, **_: Any) -> dict[str, str] | None:
    """Every namespace's own active-run limit annotation, as written: no daemon asks the
    API server for it on each pass. (Unfiltered, so that removing it drops the entry.)"""
    text = annotations.get(queue.NAMESPACE_LIMIT_ANNOTATION)
    return None if text is None else {name: text}


def _wake_queued(memo: Any) -> None:
    for waiting in list(memo.get("queued", ())):
        _wake(memo, waiting)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
def run_changed(uid: str, memo: Any, **_: Any) -> None:
    _wake(memo, uid)
    # A run that started, ended or went may free a slot: queued runs look again. What
    # they compute comes from the indexes and their message changes only when the limit
    # holding them does, so this costs no API call and no status write per queued run.
    _wake_queued(memo)


@kopf.on.event("v1", "namespaces")
def namespace_changed(memo: Any, **_: Any) -> None:
    """A namespace's limit set, changed or removed: queued runs look again."""
    _wake_queued(memo)


def _limits(config: OperatorConfig, annotated: kopf.Index[str, str]) -> queue.Limits:
    return queue.Limits(
        operator=config.max_active_runs,
        namespace_default=config.max_active_runs_per_namespace,
        namespaces={
            ns: queue.namespace_limit(
                {queue.NAMESPACE_LIMIT_ANNOTATION: text}, config.max_active_runs_per_namespace
            )
            for ns, texts in annotated.items()
            for text in texts
        },
    )


def _limit_problem(run: PipelineRun, annotated: kopf.Index[str, str]) -> str | None:
    """Why the run's namespace's own limit is ignored, if it is."""
    for text in annotated.get(run.metadata.namespace or "", []):
        return queue.limit_problem({queue.NAMESPACE_LIMIT_ANNOTATION: text})
    return None


def _queued(memo: Any, run: PipelineRun, body: kopf.Body, kwargs: dict[str, Any]) -> str | None:
    """Why a run that has not started must wait for a slot, or None."""
    if run.status is None or run.status.phase != Phase.PENDING or run.spec.cancel:
        return None
    run_queue: kopf.Index[str, queue.QueueEntry] = kwargs["run_queue"]
    limits = _limits(memo["config"], kwargs["namespace_limits"])
    return queue.queued(queue.queue_entry(body), list(run_queue.get("runs", [])), limits)


def _needs_daemon(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Unfinished, waiting for its TTL, or its stores not yet checked to a verdict."""
    if status.get("phase") not in {p.value for p in TERMINAL_PHASES}:
        return True
    if spec.get("ttlSecondsAfterFinished") is not None:
        return True
    verdicts = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return any(
        verdicts.get(kind, "Unknown") == "Unknown"
        for kind in (CONDITION_LINEAGE_RECORDED, CONDITION_TRACE_RECORDED)
    )


def _fresh_ids() -> RunIds:
    return RunIds(run_id=new_run_id(), trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))


async def _with_results(
    api: KubeApi,
    cache: ResultCache,
    run_uid: str,
    namespace: str,
    jobs: list[ObservedJob],
    succeeded_pods: kopf.Index[tuple[str, str], SucceededPod],
) -> dict[Any, ObservedJob]:
    """Attach each finished Job's stage result (from its pod's termination message),
    and an active single-pod Job's once its pod has succeeded."""
    out = {}
    for job in jobs:
        seen = job
        if job.state == JobState.ACTIVE:
            succeeded = next(iter(succeeded_pods.get((namespace, job.uid), [])), None)
            seen = with_pod_success(job, succeeded, cache, run_uid)
        else:
            known = cache.get(run_uid, job.uid)
            if known is None:
                if job.shards > 1:
                    pods = await api.job_pods(namespace, job.name)
                    message, reason = shards.combined_outcome(pods, job.shards)
                else:
                    pod = await api.latest_pod(namespace, job.name)
                    message, reason = pod_outcome(pod) if pod else (None, None)
                known = cache.put(run_uid, job.uid, message, reason)
            result, reason = known
            seen = dataclasses.replace(job, result=result, pod_reason=reason)
        out[job.stage] = seen
    return out


def _invalid(body: dict[str, Any], err: ValidationError, now: datetime) -> dict[str, Any]:
    """Status for a run whose spec the models reject (the CRD schema let it through)."""
    problems = "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in err.errors()[:5]
    )
    existing = body.get("status") or {}
    conditions = set_condition(
        [],
        type_="Succeeded",
        status=ConditionStatus.FALSE,
        reason=Reason.INVALID_SPEC,
        message=f"Invalid spec: {problems}",
        at=now,
    )
    status = PipelineRunStatus(phase=Phase.FAILED, conditions=conditions, completion_time=now)
    return {**existing, **status.model_dump(mode="json", by_alias=True, exclude_none=True)}


async def _execute(
    decision: Decision,
    run: PipelineRun,
    body: kopf.Body,
    memo: Any,
    now: datetime,
    made: set[str],
) -> dict[str, Any] | None:
    """Carry out the decision's actions and write its status. `made`: the kinds of the
    run's shared children (its ConfigMap, its workspace claim) this daemon has created
    already, so that they are created once per run, not before every stage."""
    api: KubeApi = memo["api"]
    config: OperatorConfig = memo["config"]
    namespace, name, uid = (
        run.metadata.namespace or "",
        run.metadata.name or "",
        run.metadata.uid or "",
    )
    staged = run.model_copy(update={"status": decision.status})
    for action in decision.actions:
        if isinstance(action, CreateJob):
            shared = [config_map(staged, config)]
            if not config.workspace_host_path and owns_workspace(staged):
                shared.append(workspace_claim(staged, config))
            for child in shared:
                if child["kind"] not in made:
                    await api.create_owned(child, uid)
                    made.add(child["kind"])
            await api.create_owned(stage_job(staged, action.stage, config), uid)
        elif isinstance(action, DeleteJob):
            await api.delete_job(namespace, action.name)
        elif isinstance(action, RecordEvent):
            kopf.event(body, type=action.type, reason=action.reason, message=action.message)
        elif isinstance(action, EmitRunEvent):
            await memo["telemetry"].emit(staged, action.event_type, now)
        elif isinstance(action, DeleteRun):
            await api.delete_run(namespace, name)
            return None

    async def write_then_publish() -> dict[str, Any] | None:
        written = None
        if decision.status != run.status:
            wire = decision.status.model_dump(mode="json", by_alias=True, exclude_none=False)
            written = await api.patch_status(namespace, name, wire)
        # After the write that records the stages' ends: a pass whose write is lost
        # publishes nothing, and the pass deciding again (at another time) publishes its
        # span once.
        for stage in shards.newly_finished(run.status, decision.status, run):
            await memo["telemetry"].emit_stage_span(staged, stage)
        return written

    # Shielded: a write that ends the run with its verdicts decided makes kopf cancel this
    # daemon at once (`_needs_daemon` turns false), possibly before the write's answer is
    # read; the spans of the stages it records as ended must still be published.
    return await asyncio.shield(write_then_publish())


async def _repair_config(
    run: PipelineRun,
    jobs: list[ObservedJob],
    waits: kopf.Index[tuple[str, str], ConfigWait],
    memo: Any,
    body: kopf.Body,
    repaired: set[str],
) -> None:
    """Create the run's ConfigMap again when an active stage's pod cannot start for want
    of it (config_repair.py): once for each such pod, recorded in `repaired`."""
    namespace, name = run.metadata.namespace or "", run.metadata.name or ""
    wanted = config_map_name(name)
    for job in jobs:
        if job.state != JobState.ACTIVE:
            continue
        for wait in waits.get((namespace, job.uid), []):
            if wait.pod_uid in repaired or not wait.names(wanted):
                continue
            repaired.add(wait.pod_uid)
            api: KubeApi = memo["api"]
            if await api.restore_config_map(
                config_map(run, memo["config"]), run.metadata.uid or ""
            ):
                kopf.event(
                    body,
                    type="Warning",
                    reason="ConfigMapRecreated",
                    message=f"ConfigMap {wanted} was gone or lacked a key ({job.stage.value} "
                    "waited): made whole again",
                )


async def _lost_workspace(
    run: PipelineRun,
    jobs: list[ObservedJob],
    waits: kopf.Index[tuple[str, str], ClaimWait],
    api: KubeApi,
    config: OperatorConfig,
    checked: set[tuple[str, str]],
) -> tuple[StageName, str] | None:
    """The stage whose pod cannot be placed because the run's workspace claim is gone,
    and the run's failure message (workspace_loss.py); None while the claim is there.
    The claim is read once for each message a pod shows (recorded in `checked`)."""
    if config.workspace_host_path:
        return None
    namespace = run.metadata.namespace or ""
    claim = workspace_claim_name(run)
    for job in jobs:
        if job.state != JobState.ACTIVE:
            continue
        for wait in waits.get((namespace, job.uid), []):
            seen = (wait.pod_uid, wait.message)
            if wait.claim != claim or seen in checked:
                continue
            checked.add(seen)
            gone = claim_gone(await api.read_claim(namespace, claim))
            if gone is not None:
                return job.stage, lost_message(namespace, claim, gone, job.stage.value)
    return None


async def _resolve(
    api: KubeApi, namespace: str, current: dict[str, Any], body: kopf.Body, now: datetime
) -> dict[str, Any] | None:
    """Snapshot the run's Pipeline into its status (the new body), or fail the run (None)."""
    name = current["metadata"]["name"]
    pipeline = await api.get_pipeline(namespace, resolve.pipeline_name(current) or "")
    outcome = resolve.resolve_run(pipeline, current)
    if isinstance(outcome, resolve.Unresolvable):
        # The Event is queued before the status write: the write makes the run terminal,
        # which stops this daemon, and nothing after it may be reached.
        kopf.event(body, type="Warning", reason=outcome.reason, message=outcome.message[:1000])
        await api.patch_status(namespace, name, resolve.unresolvable_status(current, outcome, now))
        return None
    return await api.patch_status(namespace, name, {"pipelineSpec": outcome.wire()})


async def _continue(
    api: KubeApi,
    config: OperatorConfig,
    namespace: str,
    current: dict[str, Any],
    body: kopf.Body,
    now: datetime,
) -> dict[str, Any] | None:
    """Read a re-run's earlier run into its status (the new body), or fail it (None).
    A re-run accepted to reuse a workspace claim is first made one of its owners."""
    name = current["metadata"]["name"]
    earlier = await api.get_run(namespace, rerun.rerun_of(current) or "")
    claim = None
    if earlier is not None and not config.workspace_host_path:
        claim = await api.read_claim(namespace, rerun.reused_claim_name(earlier))
    outcome = rerun.continue_run(earlier, current, config, claim=claim)
    if not isinstance(outcome, resolve.Unresolvable):
        adopted = rerun.adopted_claim(outcome, current, config)
        if adopted is not None and not await api.add_claim_owner(
            namespace, adopted, rerun.claim_owner(current)
        ):
            # Gone since it was read: refused as if it had never been there.
            outcome = rerun.continue_run(earlier, current, config, claim=None)
    if isinstance(outcome, resolve.Unresolvable):
        # The Event is queued before the status write: the write makes the run terminal,
        # which stops this daemon, and nothing after it may be reached.
        kopf.event(body, type="Warning", reason=outcome.reason, message=outcome.message[:1000])
        await api.patch_status(namespace, name, resolve.unresolvable_status(current, outcome, now))
        return None
    return await api.patch_status(namespace, name, outcome)


async def _release_workspace(api: KubeApi, config: OperatorConfig, run: PipelineRun) -> None:
    """Delete the run's workspace claim (a host-path workspace is the node's to clean).
    A run that did not succeed keeps it, so that a re-run can reuse its stages' outputs
    (it goes with its owners, through their owner references); a re-run never deletes
    the workspace of the run it re-runs."""
    if config.workspace_host_path or not owns_workspace(run):
        return
    if run.status is not None and run.status.phase != Phase.SUCCEEDED:
        return
    name = workspace_claim_name(run)
    try:
        await api.delete_claim(run.metadata.namespace or "", name)
    except Exception as err:  # best effort: the owner reference still collects it
        logging.getLogger(__name__).warning(
            "could not delete workspace claim %s/%s: %s", run.metadata.namespace, name, err
        )


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, when=_needs_daemon, cancellation_timeout=10)
async def reconcile(
    *,
    body: kopf.Body,
    uid: str,
    namespace: str | None,
    memo: Any,
    stopped: kopf.DaemonStopped,
    logger: Logger | LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    stage_jobs: kopf.Index[tuple[str, str], ObservedJob] = kwargs["stage_jobs"]
    namespace = namespace or ""
    waker = memo["wakers"].setdefault(uid, asyncio.Event())
    config: OperatorConfig = memo["config"]
    latest: dict[str, Any] = {}
    schedule: VerifySchedule | None = None  # the store checks, once the run has ended
    claim_released = False
    limit_warned = False
    made: set[str] = set()  # a daemon started again tries each once more (ours: 409)
    repaired: set[str] = set()  # pods whose missing ConfigMap was created again
    claims_checked: set[tuple[str, str]] = set()  # (pod, scheduler message) looked into
    created = CreatedJobs(patience=config.poll_seconds)
    try:
        while not stopped:
            waker.clear()
            started = time.perf_counter()
            # The live body may lag behind our own last status write: use the newer one.
            current = newer(body, latest)
            now = datetime.now(UTC)
            if rerun.needs_source(current):
                continued = await _continue(memo["api"], config, namespace, current, body, now)
                if continued is None:
                    return
                latest = continued
                continue
            if resolve.needs_resolution(current):
                resolved = await _resolve(memo["api"], namespace, current, body, now)
                if resolved is None:
                    return
                latest = resolved
                continue
            try:
                run = PipelineRun.model_validate(current)
            except ValidationError as err:
                if (current.get("status") or {}).get("phase") not in {
                    p.value for p in TERMINAL_PHASES
                }:
                    await memo["api"].patch_status(
                        namespace, body["metadata"]["name"], _invalid(current, err, now)
                    )
                    kopf.event(
                        body,
                        type="Warning",
                        reason=Reason.INVALID_SPEC,
                        message=redact_text(str(err))[:1000],
                    )
                return
            first_sight = run.status is None or run.status.run_id is None
            if first_sight:
                # Its ids now, and decided on at once: one status write holds both,
                # made before any Job or event (a restart reuses the ids).
                run = run.model_copy(update={"status": accepted(run, _fresh_ids(), now)})
            jobs = list(stage_jobs.get((namespace, uid), []))
            hold = created.wait({job.stage.value for job in jobs}, time.monotonic())
            if hold > 0:
                await sleep_until_woken(waker, stopped, hold)
                continue
            with kube_tracing.under_run(run.status.traceparent if run.status else None):
                observed = await _with_results(
                    memo["api"], memo["results"], uid, namespace, jobs, kwargs["stage_pods"]
                )
            # From the indexes: no API call unless a stage pod found the ConfigMap gone.
            await _repair_config(run, jobs, kwargs["config_waits"], memo, body, repaired)
            waiting = _queued(memo, run, body, kwargs)
            if not limit_warned and run.status is not None and run.status.phase == Phase.PENDING:
                # Once per run, as it starts or queues: the limit it is held by is not the
                # one its namespace meant.
                problem = _limit_problem(run, kwargs["namespace_limits"])
                if problem is not None:
                    kopf.event(body, type="Warning", reason="InvalidLimit", message=problem)
                limit_warned = True
            if waiting is None:
                memo.setdefault("queued", set()).discard(uid)
            else:
                memo.setdefault("queued", set()).add(uid)
            metrics.QUEUED_RUNS.set(len(memo["queued"]))
            lost = await _lost_workspace(
                run, jobs, kwargs["claim_waits"], memo["api"], config, claims_checked
            )
            if lost is not None and run.status is not None and run.status.run_id is not None:
                decision = workspace_lost(run, *lost, now)
            else:
                decision = decide(run, observed, now, _fresh_ids(), queued=waiting)
            if any(isinstance(a, CreateJob) for a in decision.actions):
                # Checked (hosts resolved anew) before each Job: nothing runs that the
                # policy refuses, even when DNS or the policy changed since the last stage.
                violations = await policy.check(run.spec, config)
                if violations:
                    logger.warning("run refused: %s", policy.message(violations))
                    decision = refuse(run, policy.message(violations), now, decision)
            ending = decision.terminal and (
                run.status is None or run.status.phase not in TERMINAL_PHASES
            )
            if ending and verify.pending(decision.status):
                # The verdicts' links and Waiting go in the write that ends the run; the
                # stores, which cannot hold it yet, are first asked a second later.
                ended = run.model_copy(update={"status": decision.status})
                decision.status = memo["checker"].awaiting(ended, now)
                schedule = VerifySchedule.at_end(time.monotonic())
            try:
                with kube_tracing.under_run(decision.status.traceparent):
                    if first_sight and not decision.terminal:
                        # Its ids before any Job or START. Not for a run refused at once:
                        # that write would end it, and kopf cancels the daemon as soon as
                        # it sees the run ended and decided, before its Events are posted
                        # (they go out in `_execute`, before its write).
                        wire = decision.status.model_dump(
                            mode="json", by_alias=True, exclude_none=False
                        )
                        latest = await memo["api"].patch_status(namespace, run.metadata.name, wire)
                        run = run.model_copy(update={"status": decision.status})
                    written = await _execute(decision, run, body, memo, now, made)
                for action in decision.actions:
                    if isinstance(action, CreateJob):
                        created.created(action.stage.value, time.monotonic())
            except NotOurs as err:
                logger.error("%s", err)
                kopf.event(body, type="Warning", reason="NameConflict", message=str(err))
                written = None
                decision.requeue_after = config.poll_seconds
            if written is not None:
                latest = written
            if decision.terminal and not claim_released:
                # Nothing reads a succeeded run's workspace once it has ended: give its
                # volume back now rather than when the PipelineRun is deleted.
                ended = run.model_copy(update={"status": decision.status})
                await _release_workspace(memo["api"], config, ended)
                claim_released = True
            verifying = decision.terminal and verify.pending(decision.status)
            if verifying:
                schedule = schedule or VerifySchedule.since(
                    decision.status.completion_time, now, time.monotonic()
                )
            if verifying and schedule is not None and schedule.due(time.monotonic()):
                finished = run.model_copy(update={"status": decision.status})
                checked = await memo["checker"].check(finished, now)
                metrics.STORE_CHECKS.inc()
                if checked != decision.status:
                    wire = checked.model_dump(mode="json", by_alias=True, exclude_none=False)
                    latest = await memo["api"].patch_status(namespace, run.metadata.name, wire)
                verifying = verify.pending(checked)
                schedule.checked(time.monotonic())
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
            if decision.terminal and not verifying and run.spec.ttl_seconds_after_finished is None:
                return
            if decision.requeue_after == 0:
                continue
            timeout = (
                config.poll_seconds if decision.requeue_after is None else decision.requeue_after
            )
            if verifying and schedule is not None:
                # Asked again when the schedule says (a wake-up before then only waits).
                timeout = min(timeout, schedule.wait(time.monotonic()))
            await sleep_until_woken(waker, stopped, max(0.05, min(timeout, config.poll_seconds)))
    finally:
        memo["wakers"].pop(uid, None)
        memo.setdefault("queued", set()).discard(uid)
        metrics.QUEUED_RUNS.set(len(memo["queued"]))
        # The results are read again from the pods if the run's daemon ever comes back.
        memo["results"].forget(uid)


@kopf.on.probe(id="runs")
def probe_runs(memo: Any, **_: Any) -> int:
    """Liveness detail: how many run daemons are active."""
    return len(memo.get("wakers", {}))
