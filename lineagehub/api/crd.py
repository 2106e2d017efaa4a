"""Build the PipelineRun CRD and the operator's ClusterRole from the API models.

The CRD's schema is the models' JSON schema made structural (what apiextensions/v1
demands): `$ref`s inlined, `title`s dropped, `Optional` (`anyOf [..., null]`)
folded into the plain type, `additionalProperties: false` dropped (the API server
prunes unknown fields and `kubectl --validate=strict` reports them), int-or-string
written the Kubernetes way, and the `x-kubernetes-*` entries the models carry
(CEL rules, list types) kept as they are.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel

from lineagehub.api import pipeline
from lineagehub.api.pipelinerun import (
    API_GROUP,
    API_VERSION,
    CATEGORIES,
    CONDITION_LINEAGE_RECORDED,
    CONDITION_SUCCEEDED,
    CONDITION_TRACE_RECORDED,
    KIND,
    LIST_KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    PipelineRunResource,
)

CRD_NAME = f"{PLURAL}.{API_GROUP}"
PIPELINE_CRD_NAME = f"{pipeline.PLURAL}.{API_GROUP}"
OPERATOR_CLUSTERROLE = "lineage-hub-operator"

# Keywords apiextensions/v1 JSONSchemaProps knows and a structural schema may carry.
_KEEP = {
    "description",
    "type",
    "format",
    "default",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "required",
    "properties",
    "items",
    "additionalProperties",
    "anyOf",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
}
# JSON-schema keywords with no place in a CRD schema; dropped on purpose.
_DROP = {"title", "propertyNames", "$defs", "examples", "discriminator"}
# Formats the API server validates; others are dropped rather than ignored silently.
_FORMATS = {"date-time", "date", "uuid", "uri", "hostname", "email", "byte", "int32", "int64"}


class SchemaError(ValueError):
    """The models produced a schema that cannot be made structural."""


def _strip_none(value: Any) -> Any:
    """Defaults of nested models carry their unset optionals as null; drop those."""
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def _unwrap(text: str) -> str:
    """Docstrings are wrapped at the source's line length; `kubectl explain` rewraps."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _resolve(ref: str, defs: dict[str, Any]) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise SchemaError(f"unsupported $ref {ref!r}")
    return copy.deepcopy(defs[ref[len(prefix) :]])


def _inline(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Resolve `$ref`, single-item `allOf` and Optional `anyOf` into one plain node."""
    node = dict(node)
    if "$ref" in node:
        target = _inline(_resolve(node.pop("$ref"), defs), defs, path)
        # The referencing field's own keywords (description, default, ...) win.
        node = {**target, **node}
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaError(f"{path}: allOf with {len(parts)} members")
        node = {**_inline(parts[0], defs, path), **node}
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        if len(branches) != len(node["anyOf"]) and node.get("default", ...) is None:
            del node["default"]
        if len(branches) != 1:
            raise SchemaError(f"{path}: a union of {len(branches)} types is not structural")
        del node["anyOf"]
        node = {**_inline(branches[0], defs, path), **node}
    return node


def _structural(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _inline(node, defs, path)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key not in _KEEP:
            raise SchemaError(f"{path}: keyword {key!r} has no place in a CRD schema")
        if key == "properties":
            out[key] = {
                name: _structural(sub, defs, f"{path}.{name}") for name, sub in value.items()
            }
        elif key == "items":
            out[key] = _structural(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = _structural(value, defs, f"{path}{{}}")
            # False: dropped (pruning does the work).
        elif key == "description":
            out[key] = _unwrap(value)
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key == "default":
            if value is not None:
                out[key] = _strip_none(value)
        elif key in ("minimum", "maximum") and not isinstance(value, int | float):
            raise SchemaError(f"{path}: {key} must be a number")
        else:
            out[key] = copy.deepcopy(value)
    if out.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        out.pop("type", None)
    elif "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        raise SchemaError(f"{path}: no type")
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def structural_schema(model: type[BaseModel] = PipelineRunResource) -> dict[str, Any]:
    """The openAPIV3Schema of the CRD: the model's JSON schema, made structural."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _structural(raw, defs, "")
    props = schema["properties"]
    # apiVersion/kind/metadata are the API server's; the schema only declares them.
    props["apiVersion"] = {
        "description": props["apiVersion"]["description"],
        "type": "string",
    }
    props["kind"] = {"description": props["kind"]["description"], "type": "string"}
    props["metadata"] = {"type": "object"}
    schema["required"] = ["spec"]
    return schema


def _printer_columns() -> list[dict[str, Any]]:
    succeeded = f'.status.conditions[?(@.type=="{CONDITION_SUCCEEDED}")]'
    return [
        {
            "name": "Phase",
            "type": "string",
            "jsonPath": ".status.phase",
            "description": "Lifecycle phase of the run",
        },
        {
            "name": "Stage",
            "type": "string",
            "jsonPath": ".status.currentStage",
            "description": "The stage running now, or the last one that ran",
        },
        {
            "name": "Progress",
            "type": "string",
            "jsonPath": ".status.progress",
            "description": "Finished stages out of all",
        },
        {
            "name": "Records",
            "type": "integer",
            "jsonPath": '.status.stages[?(@.name=="load")].recordsOut',
            "description": "Rows written by the load stage",
        },
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": f"{succeeded}.reason",
            "description": "Reason of the Succeeded condition",
        },
        {
            "name": "Lineage",
            "type": "string",
            "jsonPath": f'.status.conditions[?(@.type=="{CONDITION_LINEAGE_RECORDED}")].status',
            "description": "Whether Marquez holds the run's lineage (LineageRecorded)",
        },
        {
            "name": "Trace",
            "type": "string",
            "jsonPath": f'.status.conditions[?(@.type=="{CONDITION_TRACE_RECORDED}")].status',
            "description": "Whether the run's trace reached ClickHouse and Jaeger (TraceRecorded)",
        },
        {
            "name": "Run-ID",
            "type": "string",
            "jsonPath": ".status.runId",
            "description": "OpenLineage run id",
        },
        {
            "name": "Succeeded",
            "type": "string",
            "priority": 1,
            "jsonPath": f"{succeeded}.status",
            "description": "Status of the Succeeded condition",
        },
        {
            "name": "Trace-ID",
            "type": "string",
            "priority": 1,
            "jsonPath": ".status.traceId",
            "description": "W3C trace id of the run",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _pipeline_printer_columns() -> list[dict[str, Any]]:
    return [
        {
            "name": "Schedule",
            "type": "string",
            "jsonPath": ".spec.schedule",
            "description": "Cron schedule of the Pipeline's own runs",
        },
        {
            "name": "Suspend",
            "type": "boolean",
            "jsonPath": ".spec.suspend",
            "description": "Whether the schedule is suspended",
        },
        {
            "name": "Last-Run",
            "type": "string",
            "jsonPath": ".status.lastRun",
            "description": "The newest run of the Pipeline",
        },
        {
            "name": "Phase",
            "type": "string",
            "jsonPath": ".status.lastRunPhase",
            "description": "Phase of the newest run",
        },
        {
            "name": "Next-Run",
            "type": "string",
            "jsonPath": ".status.nextScheduleTime",
            "description": "When the schedule creates its next run",
        },
        {
            "name": "Active",
            "type": "integer",
            "jsonPath": ".status.activeCount",
            "description": "Runs of the Pipeline that have not finished",
        },
        {
            "name": "Source",
            "type": "string",
            "priority": 1,
            "jsonPath": ".spec.source.uri",
            "description": "What the runs read (may name parameters)",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _crd(
    model: type[BaseModel],
    names: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{names['plural']}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "lineage-hub"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {**names, "categories": list(CATEGORIES)},
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": structural_schema(model)},
                }
            ],
        },
    }


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition for PipelineRun, as a plain dict."""
    names = {
        "kind": KIND,
        "listKind": LIST_KIND,
        "plural": PLURAL,
        "singular": SINGULAR,
        "shortNames": list(SHORT_NAMES),
    }
    return _crd(PipelineRunResource, names, _printer_columns())


def build_pipeline_crd() -> dict[str, Any]:
    """The CustomResourceDefinition for Pipeline, as a plain dict."""
    names = {
        "kind": pipeline.KIND,
        "listKind": pipeline.LIST_KIND,
        "plural": pipeline.PLURAL,
        "singular": pipeline.SINGULAR,
        "shortNames": list(pipeline.SHORT_NAMES),
    }
    return _crd(pipeline.Pipeline, names, _pipeline_printer_columns())


def _rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def operator_namespaced_rules() -> list[dict[str, Any]]:
    """What the operator does in a namespace it watches: every verb is one the code
    calls (operator/lineagehub_operator/kube.py, handlers.py) or kopf does for it."""
    return [
        # The runs: kopf lists and watches them and merge-patches its finalizer and
        # annotations; delete for ttlSecondsAfterFinished and the Pipelines' history
        # limits; create for scheduled runs; patch also sets spec.cancel (Replace); get
        # reads the earlier run of a re-run.
        _rule(API_GROUP, [PLURAL], ["create", "get", "list", "watch", "patch", "delete"]),
        # The status, written with a merge patch.
        _rule(API_GROUP, [f"{PLURAL}/status"], ["patch"]),
        # Owner references with blockOwnerDeletion need update on the owner's finalizers
        # where OwnerReferencesPermissionEnforcement is on (Jobs own by runs, scheduled
        # runs by their Pipeline).
        _rule(API_GROUP, [f"{PLURAL}/finalizers", f"{pipeline.PLURAL}/finalizers"], ["update"]),
        # The Pipelines: a run reads its Pipeline (get); kopf lists and watches them for
        # their daemons and patches its finalizer onto them.
        _rule(API_GROUP, [pipeline.PLURAL], ["get", "list", "watch", "patch"]),
        _rule(API_GROUP, [f"{pipeline.PLURAL}/status"], ["patch"]),
        # One Job per stage: created, read back on a name conflict, watched (index and
        # events), deleted on cancel.
        _rule("batch", ["jobs"], ["create", "get", "list", "watch", "delete"]),
        # The stage pods' termination messages; watched (index and events) so that a run
        # moves on as soon as a single-pod stage's pod has succeeded, not a second later
        # when the Job controller marks its Job Complete.
        _rule("", ["pods"], ["list", "watch"]),
        # The per-run stage configuration: created, read back on a name conflict.
        _rule("", ["configmaps"], ["create", "get", "patch"]),
        # The run's workspace volume: created, read back, deleted when the run ends.
        # patch: a re-run adds itself as an owner of the workspace claim it reuses.
        _rule("", ["persistentvolumeclaims"], ["create", "get", "patch", "delete"]),
        # Kubernetes Events on the runs (kopf posts core/v1 events).
        _rule("", ["events"], ["create"]),
    ]


def operator_discovery_rules() -> list[dict[str, Any]]:
    """Cluster-scoped reads: kopf watches CRDs (to notice its resource change), and
    namespaces: when it watches chosen namespaces only, and always for the operator's
    index of the namespaces' active-run limits."""
    rules = [_rule("apiextensions.k8s.io", ["customresourcedefinitions"], ["list", "watch"])]
    # The index of each namespace's lineagehub.io/max-active-runs annotation.
    rules.append(_rule("", ["namespaces"], ["list", "watch"]))
    return rules


def _role(kind: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "lineage-hub"}},
        "rules": rules,
    }


def build_operator_clusterrole() -> dict[str, Any]:
    """Least-privilege ClusterRole of an operator that watches the whole cluster."""
    return _role(
        "ClusterRole",
        OPERATOR_CLUSTERROLE,
        [*operator_namespaced_rules(), *operator_discovery_rules()],
    )


def build_operator_role() -> dict[str, Any]:
    """The Role bound in each namespace an operator with `--namespace` watches."""
    return _role("Role", OPERATOR_CLUSTERROLE, operator_namespaced_rules())


def build_operator_discovery_clusterrole() -> dict[str, Any]:
    """The only cluster-wide grant of an operator that watches chosen namespaces."""
    return _role(
        "ClusterRole",
        f"{OPERATOR_CLUSTERROLE}-discovery",
        operator_discovery_rules(),
    )
