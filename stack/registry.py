"""Every piece of the local stack, in start order, and the groups `--only` accepts."""

from __future__ import annotations

from collections.abc import Sequence

from stack.piece import Piece
from stack.pieces import DATA_PLANE, LINEAGE_STORE
from stack.pieces.app import APP
from stack.pieces.controlplane import CONTROL_PLANE
from stack.pieces.kubelet import Kubelet
from stack.pieces.prometheus import Prometheus

GROUPS: dict[str, tuple[Piece, ...]] = {
    "controlplane": (*CONTROL_PLANE, Kubelet()),
    "dataplane": tuple(DATA_PLANE),
    "lineage-store": tuple(LINEAGE_STORE),
    "app": APP,
    "metrics": (Prometheus(),),  # scrapes the app pieces' /metrics
}
ALL: tuple[Piece, ...] = tuple(p for group in GROUPS.values() for p in group)
#: Groups whose failure `stack up` reports and goes on without.
OPTIONAL_GROUPS = frozenset({"lineage-store", "metrics"})


def select(only: Sequence[str] | None) -> tuple[Piece, ...]:
    """Resolve `--only a,b` (piece or group names) to pieces in start order."""
    if not only:
        return ALL
    wanted: set[str] = set()
    for name in only:
        if name in GROUPS:
            wanted.update(p.name for p in GROUPS[name])
        elif any(p.name == name for p in ALL):
            wanted.add(name)
        else:
            known = ", ".join([*GROUPS, *(p.name for p in ALL)])
            raise SystemExit(f"unknown stack piece {name!r}; known: {known}")
    return tuple(p for p in ALL if p.name in wanted)
