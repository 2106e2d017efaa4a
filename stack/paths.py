"""Where the stack keeps what it builds (cache) and what it runs (state)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Built binaries and fetched jars, kept across clones and CI runs."""
    override = os.environ.get("LINEAGE_HUB_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lineage-hub"


def state_dir() -> Path:
    """Data dirs, logs, pid files, certificates of one running stack."""
    override = os.environ.get("LINEAGE_HUB_STATE")
    if override:
        return Path(override)
    return Path(os.environ.get("TMPDIR", "/tmp")) / "lineage-hub-stack"


def log_path(piece: str) -> Path:
    return state_dir() / "logs" / f"{piece}.log"


def pid_path(piece: str) -> Path:
    return state_dir() / "pids" / f"{piece}.pid"


def data_path(piece: str) -> Path:
    return state_dir() / "data" / piece
