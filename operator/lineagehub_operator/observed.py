"""What the operator sees of a stage: its Job, read into a small immutable record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from lineagehub.api.pipelinerun import StageName
from lineagehub_operator.naming import LABEL_STAGE


class JobState(StrEnum):
    ACTIVE = "Active"
    COMPLETE = "Complete"
    FAILED = "Failed"


@dataclass(frozen=True)
class StageResult:
    """The JSON a stage writes to its termination message."""

    records_in: int | None = None
    records_out: int | None = None
    error: str | None = None
    error_kind: str | None = None
    quality_failed: bool = False
    quality: tuple[Mapping[str, Any], ...] = ()
    columns: tuple[str, ...] = ()
    raw: Mapping[str, Any] | None = None
    #: When the stage's pod said it ended, to the millisecond (`finishedAt`): kept by
    #: Kubernetes in the pod's status, so every pass reads the same end.
    finished_at: datetime | None = None

    @classmethod
    def parse(cls, message: str | None) -> StageResult | None:
        """Read a termination message; a non-JSON message becomes the error text."""
        if not message:
            return None
        try:
            data = json.loads(message)
        except ValueError:
            return cls(error=_last_line(message))
        if not isinstance(data, dict):
            return cls(error=_last_line(message))
        quality = data.get("quality") or []
        quality_failed = any(
            isinstance(q, dict) and not q.get("success", True) and q.get("severity") == "fail"
            for q in quality
        )
        return cls(
            records_in=_int(data.get("recordsIn", data.get("records_in"))),
            records_out=_int(data.get("recordsOut", data.get("records_out"))),
            error=data.get("error"),
            error_kind=data.get("errorKind", data.get("error_kind")),
            quality_failed=quality_failed or data.get("errorKind") == "QualityCheckFailed",
            quality=tuple(q for q in quality if isinstance(q, dict)),
            columns=tuple(
                str(f["name"])
                for f in data.get("outputSchema") or []
                if isinstance(f, dict) and "name" in f
            )[:256],
            raw=data,
            finished_at=_moment(data.get("finishedAt")),
        )


class ResultCache:
    """Stage results read from finished pods, per run, so a pod is read once.

    Entries are dropped when the run's daemon ends (`forget`), and the oldest are
    evicted beyond `limit` entries, so an operator that runs for months does not
    keep every Job it ever saw."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._entries: dict[tuple[str, str], tuple[StageResult | None, str | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, run_uid: str, job_uid: str) -> tuple[StageResult | None, str | None] | None:
        return self._entries.get((run_uid, job_uid))

    def put(
        self, run_uid: str, job_uid: str, message: str | None, pod_reason: str | None
    ) -> tuple[StageResult | None, str | None]:
        entry = (StageResult.parse(message), pod_reason)
        self._entries[(run_uid, job_uid)] = entry
        while len(self._entries) > self.limit:
            del self._entries[next(iter(self._entries))]  # insertion order: the oldest
        return entry

    def forget(self, run_uid: str) -> None:
        for key in [k for k in self._entries if k[0] == run_uid]:
            del self._entries[key]


def _last_line(text: str) -> str:
    """The last non-empty line (of a log tail: usually the exception), at most 1 KiB."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "")[-1024:]


def _moment(value: Any) -> datetime | None:
    """An RFC 3339 time with its offset (a stage's `finishedAt`); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(UTC) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ObservedJob:
    stage: StageName
    name: str
    uid: str
    state: JobState
    attempts: int
    start_time: datetime | None = None
    completion_time: datetime | None = None
    failure_reason: str | None = None
    failure_message: str | None = None
    deleting: bool = False
    result: StageResult | None = None
    pod_reason: str | None = None  # e.g. DeadlineExceeded on the last failed pod
    shards: int = 1
    # Its (only) pod exited 0 though the Job is not Complete yet (pod_success.py).
    pod_succeeded: bool = False


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def observe_job(body: Mapping[str, Any]) -> ObservedJob | None:
    """Read a Job body; None when it is not one of our stage Jobs."""
    meta = body.get("metadata") or {}
    try:
        stage = StageName((meta.get("labels") or {}).get(LABEL_STAGE, ""))
    except ValueError:
        return None
    status = body.get("status") or {}
    conditions = {
        c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"
    }
    # Complete/Failed appear only once every pod has stopped (Kubernetes >= 1.31);
    # SuccessCriteriaMet/FailureTarget come earlier and are not terminal for us.
    if "Complete" in conditions:
        state = JobState.COMPLETE
    elif "Failed" in conditions:
        state = JobState.FAILED
    else:
        state = JobState.ACTIVE
    failed = conditions.get("Failed") or {}
    failed_pods = int(status.get("failed") or 0)
    attempts = failed_pods + int(status.get("succeeded") or 0) + int(status.get("active") or 0)
    spec = body.get("spec") or {}
    shards = int(spec.get("completions") or 1)
    if shards > 1 and attempts:
        # An Indexed Job: its pods are shards, and a retry is a failed pod replaced (the
        # failure that failed the Job was not). The shards still running when the Job
        # fails are stopped and counted failed too, but never replaced: the retries are
        # at most the Job's backoffLimit (Kubernetes' default 6 when unset).
        replaced = failed_pods - (1 if state is JobState.FAILED else 0)
        backoff = spec.get("backoffLimit")
        attempts = 1 + min(max(replaced, 0), int(6 if backoff is None else backoff))
    return ObservedJob(
        stage=stage,
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        state=state,
        attempts=attempts,
        start_time=_time(status.get("startTime")),
        completion_time=_time(status.get("completionTime") or failed.get("lastTransitionTime")),
        failure_reason=failed.get("reason"),
        failure_message=failed.get("message"),
        deleting=bool(meta.get("deletionTimestamp")),
        shards=shards,
    )


def owner_uid(body: Mapping[str, Any]) -> str | None:
    """UID of the object's controller owner, if any."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None
