"""The CRD and RBAC generated from the models: drift, structural-schema sanity, metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lineagehub.api import PipelineRunSpec
from lineagehub.api.crd import (
    SchemaError,
    _structural,
    build_crd,
    build_operator_clusterrole,
    build_operator_discovery_clusterrole,
    build_operator_role,
)
from lineagehub.api.generate import CLUSTERROLE_PATH, CRD_PATH, check, main, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return build_crd()


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    version = crd["spec"]["versions"][0]
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def properties(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every declared property, with a dotted path (`[]` for items, `{}` for map values)."""
    for name, sub in node.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from properties(sub, f"{path}.{name}")
    if "items" in node:
        yield from properties(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from properties(node["additionalProperties"], f"{path}{{}}")


def at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.strip(".").split("."):
        if part.endswith("[]"):
            node = node["properties"][part[:-2]]["items"]
        else:
            node = node["properties"][part]
    return node


# --------------------------------------------------------------------------- drift


def test_committed_manifests_match_the_models() -> None:
    diffs = check(ROOT)
    assert not diffs, (
        "crds/ drifted from lineagehub/api; run `python -m lineagehub.api.generate`\n"
        + "\n".join(diffs)
    )


def test_check_command_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    crd_file = tmp_path / CRD_PATH
    crd_file.write_text(crd_file.read_text().replace("plrun", "plruns"))
    capsys.readouterr()
    assert main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-    - plruns" in out and "+    - plrun" in out
    assert (tmp_path / CLUSTERROLE_PATH).is_file()


def test_render_is_deterministic() -> None:
    assert render(build_crd()) == render(build_crd())
    loaded = yaml.safe_load(render(build_crd()))
    assert loaded == build_crd()


# --------------------------------------------------------------------------- structural schema


def test_no_json_schema_leftovers(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        if isinstance(node, dict) and not path.endswith("/properties"):
            for bad in ("$ref", "$defs", "title", "allOf", "oneOf", "propertyNames", "const"):
                assert bad not in node, f"{bad} at {path}"
            assert node.get("additionalProperties") is not False, path
            if "anyOf" in node:
                assert node.get("x-kubernetes-int-or-string") is True, path
            assert {"type": "null"} not in node.get("anyOf", []), path


def test_every_node_is_typed(schema: dict[str, Any]) -> None:
    for path, node in properties(schema):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing = [
        path
        for path, node in properties(schema)
        if path != ".metadata" and not node.get("description")
    ]
    assert not missing


def test_descriptions_are_single_paragraph_text(schema: dict[str, Any]) -> None:
    for path, node in properties(schema):
        assert "\n" not in node.get("description", ""), path


def test_enums(schema: dict[str, Any]) -> None:
    spec = ".spec"
    assert at(schema, f"{spec}.source.format")["enum"] == ["csv", "json", "ndjson", "parquet"]
    assert at(schema, f"{spec}.sink.format")["enum"] == ["parquet", "csv", "ndjson", "clickhouse"]
    assert at(schema, f"{spec}.sink.mode")["enum"] == ["append", "overwrite"]
    assert at(schema, f"{spec}.transform.quality[].severity")["enum"] == ["fail", "warn"]
    assert at(schema, f"{spec}.transform.quality[].type")["enum"] == [
        "not_null",
        "unique",
        "range",
        "accepted_values",
        "regex",
    ]
    cast = at(schema, f"{spec}.transform.cast")["additionalProperties"]
    assert "float64" in cast["enum"] and cast["type"] == "string"
    assert at(schema, ".status.phase")["enum"] == [
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Cancelled",
    ]


def test_defaults(schema: dict[str, Any]) -> None:
    assert at(schema, ".spec.sink.mode")["default"] == "overwrite"
    assert at(schema, ".spec.cancel")["default"] is False
    assert at(schema, ".spec.suspend")["default"] is False
    # transform, stages and openlineage have no CRD default: a run with pipelineRef must
    # leave them unset (CEL `has()`), and the models fill them in for an inline run.
    for name in ("transform", "stages", "openlineage"):
        assert "default" not in at(schema, f".spec.{name}"), name
    assert at(schema, ".spec.stages.defaults.retries")["default"] == 1
    # Object defaults must be valid objects themselves (the API server checks this).
    stages_default = at(schema, ".spec.stages.defaults")["default"]
    spec = PipelineRunSpec.model_validate(
        {
            "source": {"uri": "file:///a", "format": "csv"},
            "sink": {"uri": "file:///b", "format": "csv"},
            "stages": {"defaults": stages_default},
        }
    )
    assert spec.wire()["stages"] == {"defaults": stages_default}
    assert PipelineRunSpec.model_validate(
        {"source": spec.source.wire(), "sink": spec.sink.wire()}
    ).wire()["stages"] == {"defaults": stages_default}
    for path, node in walk(schema):
        if isinstance(node, dict) and isinstance(node.get("default"), dict):
            assert None not in node["default"].values(), path


def test_patterns_and_bounds(schema: dict[str, Any]) -> None:
    assert at(schema, ".spec.source.uri")["pattern"].startswith("^(file|http|https|s3)://")
    assert at(schema, ".spec.sink.uri")["pattern"].startswith("^(file|s3|clickhouse)://")
    assert at(schema, ".spec.stages.defaults.retries")["minimum"] == 0
    assert at(schema, ".spec.stages.defaults.retries")["maximum"] == 10
    assert at(schema, ".spec.ttlSecondsAfterFinished")["minimum"] == 0


def test_spec_strings_and_lists_are_bounded(schema: dict[str, Any]) -> None:
    """CEL cost estimates grow with unbounded strings and lists; bound all of the spec's."""
    unbounded = []
    for path, node in properties(at(schema, ".spec"), ".spec"):
        if node.get("type") == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(path)
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            unbounded.append(path)
    assert not unbounded


def test_list_types(schema: dict[str, Any]) -> None:
    derived = at(schema, ".spec.transform.derived")
    assert derived["x-kubernetes-list-type"] == "map"
    assert derived["x-kubernetes-list-map-keys"] == ["name"]
    assert derived["items"]["required"] == ["name", "expr"]
    assert at(schema, ".spec.transform.select")["x-kubernetes-list-type"] == "set"
    conditions = at(schema, ".status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status", "reason"}
    stages = at(schema, ".status.stages")
    assert stages["x-kubernetes-list-map-keys"] == ["name"]


def test_int_or_string_quantities(schema: dict[str, Any]) -> None:
    value = at(schema, ".spec.resources.limits")["additionalProperties"]
    assert value["x-kubernetes-int-or-string"] is True
    assert value["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert "type" not in value


def test_times_are_date_time(schema: dict[str, Any]) -> None:
    assert at(schema, ".status.startTime")["format"] == "date-time"
    assert at(schema, ".status.conditions[].lastTransitionTime")["format"] == "date-time"


# --------------------------------------------------------------------------- CEL


def rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_cel_rules_present(schema: dict[str, Any]) -> None:
    root = rules(schema)
    assert any("oldSelf.status.phase" in r and "self.spec == oldSelf.spec" in r for r in root)
    spec_rules = rules(at(schema, ".spec"))
    assert "!has(self.source) || !has(self.sink) || self.sink.uri != self.source.uri" in spec_rules
    assert "has(self.pipelineRef) || has(self.source)" in spec_rules
    assert "!has(self.params) || has(self.pipelineRef)" in spec_rules
    assert "!oldSelf.cancel || self.cancel" in rules(at(schema, ".spec"))
    quality = rules(at(schema, ".spec.transform.quality")["items"])
    assert "!has(self.min) || !has(self.max) || self.min <= self.max" in quality
    sink = rules(at(schema, ".spec.sink"))
    assert any("clickhouse://" in r for r in sink)
    assert rules(at(schema, ".spec.transform.rename"))


def test_every_rule_has_a_message(schema: dict[str, Any]) -> None:
    count = 0
    for path, node in walk(schema):
        if isinstance(node, dict) and "x-kubernetes-validations" in node:
            for rule in node["x-kubernetes-validations"]:
                count += 1
                assert rule["message"], path
                assert set(rule) <= {"rule", "message", "fieldPath", "reason"}, path
    assert count >= 10


# --------------------------------------------------------------------------- CRD metadata


def test_names_and_subresources(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "pipelineruns.lineagehub.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == "PipelineRun"
    assert names["plural"] == "pipelineruns"
    assert "lineagehub" in names["categories"]
    assert names["shortNames"] and not {"pr", "prs"} & set(names["shortNames"])
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns(crd: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(columns)[:4] == ["Phase", "Stage", "Progress", "Records"]
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Progress"]["jsonPath"] == ".status.progress"
    assert columns["Records"]["type"] == "integer"
    assert "Succeeded" in columns["Reason"]["jsonPath"]
    assert columns["Age"]["type"] == "date"
    for column in columns.values():
        assert column["type"] in {"string", "integer", "number", "boolean", "date"}
        assert column["jsonPath"].startswith(".")


# --------------------------------------------------------------------------- RBAC


def _grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    return {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }


#: Exactly the verbs the operator's code (and kopf for it) uses in a namespace: each one is
#: named by a call in operator/lineagehub_operator/kube.py or handlers.py, or kopf's
#: list/watch/merge-patch/event posting. Anything more is a grant nobody uses.
NAMESPACED_GRANTS = {
    ("lineagehub.io", "pipelineruns"): {"create", "get", "list", "watch", "patch", "delete"},
    ("lineagehub.io", "pipelineruns/status"): {"patch"},
    ("lineagehub.io", "pipelineruns/finalizers"): {"update"},
    ("lineagehub.io", "pipelines/finalizers"): {"update"},
    ("lineagehub.io", "pipelines/status"): {"patch"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "configmaps"): {"create", "get", "patch"},
    ("", "persistentvolumeclaims"): {"create", "get", "patch", "delete"},
    ("", "events"): {"create"},
    ("lineagehub.io", "pipelines"): {"get", "list", "watch", "patch"},
}
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")


def test_operator_clusterrole_grants_exactly_what_the_code_uses() -> None:
    role = build_operator_clusterrole()
    assert role["kind"] == "ClusterRole"
    # Cluster-wide, kopf also watches CRDs, and namespaces for their active-run limits.
    assert _grants(role) == {
        **NAMESPACED_GRANTS,
        CRDS: {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_operator_role_and_discovery_clusterrole_for_chosen_namespaces() -> None:
    role = build_operator_role()
    assert role["kind"] == "Role"
    assert _grants(role) == NAMESPACED_GRANTS
    discovery = build_operator_discovery_clusterrole()
    assert discovery["kind"] == "ClusterRole"
    # The only cluster-wide grants then: read-only discovery kopf does.
    assert _grants(discovery) == {
        CRDS: {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }


def test_operator_uses_no_verb_the_role_does_not_grant() -> None:
    """Every Kubernetes client method the operator calls maps to a granted verb."""
    import re

    source = "\n".join(
        p.read_text() for p in (ROOT / "operator" / "lineagehub_operator").glob("*.py")
    )
    calls = set(
        re.findall(r"\.(create|read|patch|delete|list|replace)_namespaced_(\w+?)\b", source)
    )
    verb = {"create": "create", "read": "get", "patch": "patch", "delete": "delete"}
    verb |= {"list": "list", "replace": "update", "get": "get"}
    resource = {
        "config_map": ("", "configmaps"),
        "persistent_volume_claim": ("", "persistentvolumeclaims"),
        "job": ("batch", "jobs"),
        "pod": ("", "pods"),
    }
    used: dict[tuple[str, str], set[str]] = {}
    for action, kind in calls:
        if "custom_object" not in kind:
            used.setdefault(resource[kind], set()).add(verb[action])
    # CustomObjectsApi calls take the plural as their fourth argument.
    plurals = {"PLURAL": "pipelineruns", "pipeline.PLURAL": "pipelines"}
    custom = re.findall(
        r"\.(create|get|patch|delete|list)_namespaced_custom_object(_status)?,"
        r"\s*\w+,\s*\w+,\s*[\w\[\]\"]+,\s*([\w.]+)",
        source,
    )
    # Reads go through one helper that takes the plural from its callers.
    custom += [("get", "", p) for p in re.findall(r"_get_custom\(\w+, ([\w.]+),", source)]
    custom = [c for c in custom if c[2] != "plural"]
    assert len(custom) >= 7, custom
    for action, status, plural in custom:
        key = ("lineagehub.io", plurals[plural] + ("/status" if status else ""))
        used.setdefault(key, set()).add(verb[action])
    # The one cluster-scoped watch: the namespaces' limits (a kopf index), granted
    # cluster-wide whichever namespaces the operator watches.
    assert '@kopf.index("v1", "namespaces")' in source
    for role in (build_operator_discovery_clusterrole(), build_operator_clusterrole()):
        assert {"list", "watch"} <= _grants(role)[("", "namespaces")]
    grants = _grants(build_operator_role())
    # The stage pods are watched (a kopf index): a pod's success moves its run on.
    assert '@kopf.index("v1", "pods"' in source
    assert {"list", "watch"} <= grants[("", "pods")]
    for key, verbs in used.items():
        assert verbs <= grants[key], f"{key}: the code calls {verbs - grants[key]}"


# --------------------------------------------------------------------------- converter


@pytest.mark.parametrize(
    "node",
    [
        {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        {"type": "string", "uniqueItems": True},
        {"allOf": [{"type": "string"}, {"type": "integer"}]},
        {"description": "untyped"},
    ],
)
def test_converter_refuses_non_structural(node: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        _structural(node, {}, "x")


def test_converter_folds_optional_and_refs() -> None:
    defs = {
        "M": {
            "title": "M",
            "type": "object",
            "description": "model",
            "properties": {"a": {"type": "integer", "title": "A"}},
        }
    }
    node = {
        "anyOf": [{"$ref": "#/$defs/M"}, {"type": "null"}],
        "default": None,
        "description": "field",
    }
    assert _structural(node, defs, "x") == {
        "type": "object",
        "description": "field",
        "properties": {"a": {"type": "integer"}},
    }
    assert _structural({"type": "object", "additionalProperties": True}, {}, "x") == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
