"""Limits on active runs: operator-wide (`LINEAGEHUB_MAX_ACTIVE_RUNS`) and per namespace
(`LINEAGEHUB_MAX_ACTIVE_RUNS_PER_NAMESPACE`, or the namespace's own
`lineagehub.io/max-active-runs` annotation). A run over a limit waits `Pending` with
reason `Queued` (its `Succeeded` condition Unknown, as Tekton's pending runs) and starts
when a slot frees, in creation order: a run may start only when the active runs plus
the waiting runs created before it are under every limit that applies.

Pure: the daemon passes in what the operator's index of runs holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lineagehub.api.pipelinerun import API_GROUP, Phase

NAMESPACE_LIMIT_ANNOTATION = f"{API_GROUP}/max-active-runs"


@dataclass(frozen=True)
class QueueEntry:
    """One run as the queue sees it."""

    namespace: str
    name: str
    created: str  # RFC 3339, as the API server wrote it: sorts as time
    phase: Phase | None
    held: bool  # cancelled or suspended: not waiting for a slot

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.created, self.namespace, self.name)

    @property
    def active(self) -> bool:
        return self.phase == Phase.RUNNING

    @property
    def waiting(self) -> bool:
        return self.phase in (None, Phase.PENDING) and not self.held


def queue_entry(body: Mapping[str, Any]) -> QueueEntry:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    raw = (body.get("status") or {}).get("phase")
    try:
        phase: Phase | None = Phase(raw) if raw else None
    except ValueError:
        phase = None
    return QueueEntry(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        created=str(meta.get("creationTimestamp") or ""),
        phase=phase,
        held=bool(spec.get("cancel") or spec.get("suspend")),
    )


def namespace_limit(annotations: Mapping[str, str] | None, default: int) -> int:
    """The namespace's limit: its annotation when it holds a whole number, else `default`
    (0: no limit)."""
    text = (annotations or {}).get(NAMESPACE_LIMIT_ANNOTATION, "").strip()
    return int(text) if text.isdigit() else default


def _over(
    me: tuple[str, str, str], entries: Sequence[QueueEntry], limit: int, scope: str
) -> str | None:
    if limit <= 0:
        return None
    active = sum(1 for e in entries if e.active)
    ahead = sum(1 for e in entries if e.waiting and e.key < me)
    if active + ahead < limit:
        return None
    return (
        f"Queued: {active} of {limit} runs active {scope}, {ahead} waiting before this one;"
        " it starts when a slot frees"
    )


def queued(
    me: QueueEntry,
    entries: Sequence[QueueEntry],
    *,
    operator_limit: int,
    namespace_limit: int,
) -> str | None:
    """Why `me` must wait (the `Queued` message), or None when it may start now."""
    others = [e for e in entries if (e.namespace, e.name) != (me.namespace, me.name)]
    mine = [e for e in others if e.namespace == me.namespace]
    return _over(me.key, others, operator_limit, "operator-wide") or _over(
        me.key, mine, namespace_limit, f"in namespace {me.namespace}"
    )
