"""A stage pod that cannot start because its run's ConfigMap is gone, or lacks its key.

The operator creates a run's ConfigMap once (handlers `_execute`), not before every
stage. If it is deleted (or a stage's key removed from it) while the run goes on, the
next stage's pod cannot build its environment: the kubelet holds its container in
CreateContainerConfigError and tries again. The pods are watched already, so such a
pod is seen at no extra API call; the run's daemon then creates the ConfigMap again,
or puts its keys back (once for each such pod), and the kubelet's next try starts the
container. A run whose ConfigMap stays in place makes no call for it after the first
stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lineagehub_operator.pod_success import pod_job_uid

#: The kubelet's waiting reason for a container whose env or volumes it cannot build.
CONFIG_ERROR = "CreateContainerConfigError"


@dataclass(frozen=True)
class ConfigWait:
    """A stage pod whose container waits in CreateContainerConfigError."""

    job_uid: str
    pod_uid: str
    message: str

    def names(self, config_map: str) -> bool:
        """The kubelet's message names the ConfigMap `config_map` (missing, or a key
        missing in it): `configmap "<name>" not found`, `... in ConfigMap <ns>/<name>`."""
        text = self.message.lower()
        return f'"{config_map}"' in text or f"/{config_map} " in f"{text} "


def waiting_on_config(body: Mapping[str, Any]) -> ConfigWait | None:
    """A pod body, when one of its containers waits in CreateContainerConfigError."""
    status = body.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") != CONFIG_ERROR:
            continue
        job_uid = pod_job_uid(body)
        if not job_uid:
            return None
        return ConfigWait(
            job_uid=job_uid,
            pod_uid=str((body.get("metadata") or {}).get("uid") or ""),
            message=str(waiting.get("message") or ""),
        )
    return None


__all__ = ["CONFIG_ERROR", "ConfigWait", "waiting_on_config"]
