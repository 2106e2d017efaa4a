"""Deterministic names and the labels that tie a run's children to it."""

from __future__ import annotations

import hashlib

from lineagehub.api.pipelinerun import API_GROUP, StageName

LABEL_RUN = f"{API_GROUP}/pipelinerun"
LABEL_STAGE = f"{API_GROUP}/stage"
LABEL_RUN_ID = f"{API_GROUP}/run-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "lineage-hub-operator"
FINALIZER = f"{API_GROUP}/operator"
MAX_NAME = 63


def child_name(run: str, suffix: str) -> str:
    """`<run>-<suffix>`, shortened with a stable hash when longer than 63 characters.

    The same run and suffix always give the same name, so a create after a
    restart collides (409) instead of duplicating.
    """
    name = f"{run}-{suffix}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(suffix) - len(digest) - 2
    return f"{run[:keep].rstrip('-')}-{digest}-{suffix}"


def job_name(run: str, stage: StageName) -> str:
    return child_name(run, stage.value)


def config_map_name(run: str) -> str:
    return child_name(run, "config")


def label_value(name: str) -> str:
    """A label value (at most 63 characters) that stands for `name`."""
    if len(name) <= MAX_NAME:
        return name
    return f"{name[:54].rstrip('-._')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def labels(run: str, run_id: str | None = None, stage: StageName | None = None) -> dict[str, str]:
    out = {LABEL_RUN: label_value(run), LABEL_MANAGED_BY: MANAGED_BY}
    if run_id:
        out[LABEL_RUN_ID] = run_id
    if stage:
        out[LABEL_STAGE] = stage.value
    return out
