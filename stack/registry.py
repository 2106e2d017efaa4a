"""Every piece of the local stack, in start order, and the groups `--only` accepts."""

from __future__ import annotations

from collections.abc import Sequence

from stack.piece import Piece
from stack.pieces.controlplane import CONTROL_PLANE

GROUPS: dict[str, tuple[Piece, ...]] = {
    "controlplane": CONTROL_PLANE,
}
ALL: tuple[Piece, ...] = tuple(p for group in GROUPS.values() for p in group)


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
