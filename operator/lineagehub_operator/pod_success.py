"""A single-pod stage is done when its pod has succeeded, not when its Job says so.

Kubernetes' Job controller syncs a Job a fixed second after its pods' events
(SyncJobBatchPeriod), so a Job's Complete condition trails its pod's success by
0.5-1 s. For a stage Job that runs one pod to one completion (not an Indexed,
sharded one), a pod that exited 0 means the Job will be Complete: the operator
reads the stage's result from that pod, from the pod watch, and moves on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lineagehub_operator.kube import pod_outcome
from lineagehub_operator.observed import JobState, ObservedJob, ResultCache, owner_uid

#: The label the Job controller sets on its pods: the uid of their Job.
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


@dataclass(frozen=True)
class SucceededPod:
    """What the operator reads from a stage pod that exited 0."""

    job_uid: str
    message: str | None
    finished_at: datetime | None


def _finished_at(status: Mapping[str, Any]) -> datetime | None:
    times = [
        str(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt") or "")
        for cs in status.get("containerStatuses") or []
    ]
    latest = max((t for t in times if t), default=None)
    return datetime.fromisoformat(latest.replace("Z", "+00:00")) if latest else None


def pod_job_uid(body: Mapping[str, Any]) -> str | None:
    """The uid of the Job a pod belongs to: its owner, else its Job's uid label."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    job_uid = owner_uid(body) or labels.get(JOB_UID_LABEL)
    return str(job_uid) if job_uid else None


def succeeded_pod(body: Mapping[str, Any]) -> SucceededPod | None:
    """A pod body, when it is a Job's pod in phase Succeeded; otherwise None."""
    status = body.get("status") or {}
    if status.get("phase") != "Succeeded":
        return None
    job_uid = pod_job_uid(body)
    if not job_uid:
        return None
    message, _ = pod_outcome(dict(body))
    return SucceededPod(job_uid=job_uid, message=message, finished_at=_finished_at(status))


def with_pod_success(
    job: ObservedJob, pod: SucceededPod | None, cache: ResultCache, run_uid: str
) -> ObservedJob:
    """The still-active single-pod `job`, with its succeeded pod's result attached.

    The result goes into the cache under the Job's uid, so the pod is not read again
    from the API server when the Job is Complete. A sharded Job is left as it is: all
    of its indexes must succeed, which its Complete condition says."""
    if job.state is not JobState.ACTIVE or job.shards > 1 or pod is None:
        return job
    known = cache.get(run_uid, job.uid)
    if known is None:
        if pod.message is None:  # nothing to keep: the Complete Job's pod is read again
            return job
        known = cache.put(run_uid, job.uid, pod.message, None)
    result, reason = known
    return dataclasses.replace(
        job,
        pod_succeeded=True,
        result=result,
        pod_reason=reason,
        completion_time=job.completion_time or pod.finished_at,
    )


__all__ = ["JOB_UID_LABEL", "SucceededPod", "succeeded_pod", "with_pod_success"]
