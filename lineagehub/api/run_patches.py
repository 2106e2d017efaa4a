"""Merge patches of a PipelineRun's spec that more than one writer sends (operator, gateway)."""

from __future__ import annotations

from typing import Any


def cancel_patch() -> dict[str, Any]:
    """The merge patch that cancels a run: `spec.cancel` true. The operator stops its
    running stage and ends it Cancelled; the CRD refuses setting it back to false."""
    return {"spec": {"cancel": True}}


__all__ = ["cancel_patch"]
