"""Limits on active runs: operator-wide (`LINEAGEHUB_MAX_ACTIVE_RUNS`) and per namespace
(`LINEAGEHUB_MAX_ACTIVE_RUNS_PER_NAMESPACE`, or the namespace's own
`lineagehub.io/max-active-runs` annotation). A run over a limit waits `Pending` with
reason `Queued` (its `Succeeded` condition Unknown, as Tekton's pending runs) and starts
when a slot frees.

Admission is one pass over all waiting runs in creation order: a run that fits its own
namespace's limit takes an operator-wide slot if one is left; a run whose namespace is
full is passed over and takes no operator-wide slot, so it never holds up a later run of
another namespace. The `Queued` message names the limit that holds the run and nothing
that changes while it waits, so a freed slot rewrites only the status of the run that
starts.

Pure: the daemon passes in what the operator's indexes of runs and namespaces hold.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lineagehub.api.pipelinerun import API_GROUP, Phase

NAMESPACE_LIMIT_ANNOTATION = f"{API_GROUP}/max-active-runs"
_WHOLE_NUMBER = re.compile(r"[0-9]+")


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


def annotated_limit(annotations: Mapping[str, str] | None) -> int | None:
    """The limit a namespace's annotation sets: a whole number of ASCII digits (0: no
    limit), else None (absent or invalid; `limit_problem` says which)."""
    text = (annotations or {}).get(NAMESPACE_LIMIT_ANNOTATION)
    if text is None or not _WHOLE_NUMBER.fullmatch(text.strip()):
        return None
    return int(text.strip())


def limit_problem(annotations: Mapping[str, str] | None) -> str | None:
    """Why the namespace's annotation is ignored, or None when it is absent or valid."""
    text = (annotations or {}).get(NAMESPACE_LIMIT_ANNOTATION)
    if text is None or annotated_limit(annotations) is not None:
        return None
    return (
        f"annotation {NAMESPACE_LIMIT_ANNOTATION}={text!r} is not a whole number of active"
        " runs; the operator's default limit applies: set it to digits such as '2'"
        " (0: no limit), or remove it"
    )


def namespace_limit(annotations: Mapping[str, str] | None, default: int) -> int:
    """The namespace's limit: its annotation when it holds a whole number, else `default`
    (0: no limit)."""
    found = annotated_limit(annotations)
    return default if found is None else found


@dataclass(frozen=True)
class Limits:
    """The limits that apply: operator-wide, and per namespace (its annotation's, else
    the default). 0: no limit."""

    operator: int = 0
    namespace_default: int = 0
    namespaces: Mapping[str, int] = field(default_factory=dict)

    def of(self, namespace: str) -> int:
        return self.namespaces.get(namespace, self.namespace_default)


def _full(used: int, limit: int) -> bool:
    return limit > 0 and used >= limit


def admission(entries: Sequence[QueueEntry], limits: Limits) -> dict[tuple[str, str], str | None]:
    """For every waiting run, (namespace, name) -> None when it may start now, or the
    `Queued` message saying which limit holds it."""
    active = [e for e in entries if e.active]
    in_namespace = Counter(e.namespace for e in active)
    total = len(active)
    out: dict[tuple[str, str], str | None] = {}
    for e in sorted((e for e in entries if e.waiting), key=lambda e: e.key):
        limit = limits.of(e.namespace)
        if _full(in_namespace[e.namespace], limit):
            out[(e.namespace, e.name)] = (
                f"Queued: namespace {e.namespace} has its limit of {limit} active runs;"
                " it starts in creation order when a slot frees"
            )
        elif _full(total, limits.operator):
            out[(e.namespace, e.name)] = (
                f"Queued: the operator-wide limit of {limits.operator} active runs is"
                " reached; it starts in creation order when a slot frees"
            )
        else:
            out[(e.namespace, e.name)] = None
            in_namespace[e.namespace] += 1
            total += 1
    return out


def queued(me: QueueEntry, entries: Sequence[QueueEntry], limits: Limits) -> str | None:
    """Why `me` must wait (the `Queued` message), or None when it may start now."""
    others = [e for e in entries if (e.namespace, e.name) != (me.namespace, me.name)]
    waiting = QueueEntry(me.namespace, me.name, me.created, Phase.PENDING, held=False)
    return admission([*others, waiting], limits)[(me.namespace, me.name)]
