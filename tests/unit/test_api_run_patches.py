"""The cancel patch the operator and the gateway both send, read by the run's models."""

from __future__ import annotations

from typing import Any

from lineagehub.api.crd import build_crd
from lineagehub.api.pipelinerun import PipelineRun
from lineagehub.api.run_patches import cancel_patch

RUN: dict[str, Any] = {
    "apiVersion": "lineagehub.io/v1alpha1",
    "kind": "PipelineRun",
    "metadata": {"name": "orders", "namespace": "ns"},
    "spec": {
        "source": {"uri": "file:///data/in.csv", "format": "csv"},
        "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
        "suspend": True,
    },
}


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies a merge-patch+json body."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def test_the_cancel_patch_sets_cancel_and_leaves_the_rest_of_the_spec() -> None:
    assert cancel_patch() == {"spec": {"cancel": True}}
    patched = _merge(RUN, cancel_patch())
    assert PipelineRun.model_validate(RUN).spec.cancel is False
    run = PipelineRun.model_validate(patched)
    assert run.spec.cancel is True
    assert patched["spec"] == {**RUN["spec"], "cancel": True}


def test_the_crd_schema_has_the_field_the_patch_sets() -> None:
    version = build_crd()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["cancel"]["type"] == "boolean"


def test_each_call_gives_a_fresh_patch() -> None:
    first = cancel_patch()
    first["spec"]["cancel"] = False
    assert cancel_patch() == {"spec": {"cancel": True}}
