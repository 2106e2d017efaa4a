"""The demo's verdicts on a run: read from its status, each waited for with its own timeout.

Pure: the demo polls the PipelineRun and hands its status here with the time;
this says which verdicts are in, which are still awaited, which timed out, the
table to print and what went wrong. `Succeeded` is timed from the moment the run
was applied; `TraceRecorded` and `LineageRecorded` from the moment it finished
(the operator checks the stores only then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lineagehub.api.pipelinerun import (
    CONDITION_LINEAGE_RECORDED,
    CONDITION_SUCCEEDED,
    CONDITION_TRACE_RECORDED,
)

#: In the order they are reached and printed.
VERDICTS = (CONDITION_SUCCEEDED, CONDITION_TRACE_RECORDED, CONDITION_LINEAGE_RECORDED)
#: What each verdict says when True, for the table.
MEANING = {
    CONDITION_SUCCEEDED: "the run's stages",
    CONDITION_TRACE_RECORDED: "its spans in ClickHouse and Jaeger",
    CONDITION_LINEAGE_RECORDED: "its lineage in the lineage stores",
}
TIMED_OUT = "TimedOut"
NOT_REACHED = "NotReached"


@dataclass(frozen=True)
class Verdict:
    """One condition as the demo saw it last."""

    kind: str
    status: str  # True, False, Unknown, TimedOut or NotReached
    reason: str = ""
    message: str = ""
    waited: float | None = None  # its timeout, once it timed out

    @property
    def final(self) -> bool:
        return self.status != "Unknown"

    @property
    def ok(self) -> bool:
        return self.status == "True"

    def why(self) -> str:
        """`TraceRecorded is False (NotRecorded: 3 spans so far; ...)`."""
        said = f"{self.reason}: {self.message}" if self.message else self.reason
        if self.status == TIMED_OUT:
            last = f"; last said {said}" if said else ""
            return f"{self.kind} timed out after {self.waited or 0:.0f} s{last}"
        if self.status == NOT_REACHED:
            return f"{self.kind} not reached: {self.message}"
        return f"{self.kind} is {self.status} ({said})" if said else f"{self.kind} is {self.status}"


def conditions_of(status: Mapping[str, Any]) -> dict[str, Verdict]:
    """The run's verdict conditions (those absent are Unknown)."""
    seen = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    out: dict[str, Verdict] = {}
    for kind in VERDICTS:
        cond = seen.get(kind) or {}
        out[kind] = Verdict(
            kind,
            str(cond.get("status") or "Unknown"),
            str(cond.get("reason") or ""),
            str(cond.get("message") or ""),
        )
    return out


@dataclass(frozen=True)
class Timeouts:
    """Seconds each verdict may take: the run from its apply, the stores from its end."""

    succeeded: float = 300.0
    trace: float = 180.0
    lineage: float = 180.0

    def of(self, kind: str) -> float:
        return {
            CONDITION_SUCCEEDED: self.succeeded,
            CONDITION_TRACE_RECORDED: self.trace,
            CONDITION_LINEAGE_RECORDED: self.lineage,
        }[kind]


class Watch:
    """Feeds of a run's status over time, to the verdicts and when to stop waiting."""

    def __init__(self, timeouts: Timeouts, applied_at: float) -> None:
        self.timeouts = timeouts
        self.applied_at = applied_at
        self.finished_at: float | None = None
        self.verdicts: dict[str, Verdict] = {k: Verdict(k, "Unknown") for k in VERDICTS}

    def observe(self, status: Mapping[str, Any], now: float) -> None:
        """Take the status seen at `now`; a final verdict is never replaced by a later
        Unknown, and one whose time ran out is marked TimedOut with its last words."""
        seen = conditions_of(status)
        for kind, verdict in seen.items():
            if not self.verdicts[kind].final:
                self.verdicts[kind] = verdict
        if self.finished_at is None and self.verdicts[CONDITION_SUCCEEDED].final:
            self.finished_at = now
        self._expire(now)

    def _expire(self, now: float) -> None:
        for kind, verdict in self.verdicts.items():
            if verdict.final:
                continue
            if kind == CONDITION_SUCCEEDED:
                start = self.applied_at
            elif self.finished_at is not None:
                start = self.finished_at
            elif now - self.applied_at >= self.timeouts.succeeded:
                self.verdicts[kind] = Verdict(
                    kind, NOT_REACHED, message="the run did not finish, so no store was checked"
                )
                continue
            else:
                continue
            if now - start >= self.timeouts.of(kind):
                # Its timeout, not the time of this look (polls land late on a busy machine).
                self.verdicts[kind] = Verdict(
                    kind, TIMED_OUT, verdict.reason, verdict.message, waited=self.timeouts.of(kind)
                )

    @property
    def done(self) -> bool:
        return all(v.final for v in self.verdicts.values())

    def awaited(self) -> Verdict | None:
        """The first verdict still awaited (for the progress line)."""
        return next((v for v in self.verdicts.values() if not v.final), None)

    def left(self, kind: str, now: float) -> float:
        start = self.applied_at if kind == CONDITION_SUCCEEDED else self.finished_at
        if start is None:
            start = self.applied_at
        return max(0.0, self.timeouts.of(kind) - (now - start))

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts.values() if not v.ok]


def table(verdicts: Sequence[Verdict], width: int | None = None) -> list[str]:
    """VERDICT / STATUS / REASON / MESSAGE rows, the message cut to fit `width` (a
    terminal's; a log keeps it whole)."""
    rows = [("VERDICT", "STATUS", "REASON", "MESSAGE")]
    for v in verdicts:
        status = "timed out" if v.status == TIMED_OUT else v.status
        status = "not reached" if v.status == NOT_REACHED else status
        rows.append((v.kind, status, v.reason or "-", v.message or MEANING[v.kind]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
        room = max(20, width - len(head) - 4) if width else len(row[3])
        message = row[3] if len(row[3]) <= room else row[3][: room - 1] + "…"
        lines.append(f"  {head}  {message}")
    return lines


def failure_text(name: str, failures: Sequence[Verdict]) -> str:
    """The one line the demo ends with when it exits non-zero."""
    return f"demo: {name} failed: " + "; ".join(v.why() for v in failures)
