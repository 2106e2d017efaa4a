"""A stage pod that cannot be scheduled because its run's workspace claim is gone.

In claim mode (no host-path workspace) the stages hand their outputs to one another in
a PersistentVolumeClaim the operator creates with the run's first stage. Deleted while
the run goes on (by hand, a namespace clean-up, a PersistentVolume removed under it),
the earlier stages' outputs are gone with it, and the next stage's pod can never be
scheduled: the scheduler marks it Unschedulable (`persistentvolumeclaim "<name>" not
found`, `... is being deleted`, or `... bound to non-existent persistentvolume ...`)
and tries again for ever, so the run used to wait for its stage's timeout. Creating
an empty claim again would run the stage on nothing; the run fails at once instead,
saying what happened and what to do.

The scheduler's message alone is not enough: its cache can lag a claim the operator
has just created, and say "not found" of a claim that exists. So the claim is read
from the API server before the run is failed, once for each message a pod shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lineagehub_operator.pod_success import pod_job_uid

_CLAIM = re.compile(
    r'persistentvolumeclaim "(?P<name>[^"]+)" '
    r"(?P<what>not found|is being deleted|bound to non-existent persistentvolume)"
)


@dataclass(frozen=True)
class ClaimWait:
    """A stage pod the scheduler cannot place because of the claim `claim`."""

    job_uid: str
    pod_uid: str
    claim: str
    message: str


def waiting_on_claim(body: Mapping[str, Any]) -> ClaimWait | None:
    """A pod body, when it is a Job's pending pod the scheduler left unscheduled for a
    claim that is missing, being deleted or lost."""
    status = body.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") != "PodScheduled" or condition.get("status") != "False":
            continue
        message = str(condition.get("message") or "")
        found = _CLAIM.search(message)
        job_uid = pod_job_uid(body)
        if found is None or not job_uid:
            return None
        return ClaimWait(
            job_uid=job_uid,
            pod_uid=str((body.get("metadata") or {}).get("uid") or ""),
            claim=found["name"],
            message=message,
        )
    return None


def claim_gone(claim: Mapping[str, Any] | None) -> str | None:
    """What became of a claim as the API server has it: None while it is there."""
    if claim is None:
        return "was deleted"
    if (claim.get("metadata") or {}).get("deletionTimestamp"):
        return "is being deleted"
    if (claim.get("status") or {}).get("phase") == "Lost":
        return "lost its PersistentVolume"
    return None


def lost_message(namespace: str, claim: str, what: str, stage: str) -> str:
    """The run's failure message: what happened, and what to do."""
    return (
        f"the run's workspace claim {namespace}/{claim} {what} while the run went on, "
        f"so stage {stage} cannot start and the earlier stages' outputs in it are gone: "
        "start it again from its first stage (a re-run from a later stage would reuse "
        "the lost outputs)"
    )


__all__ = ["ClaimWait", "claim_gone", "lost_message", "waiting_on_claim"]
