"""A container's environment, resolved the way the kubelet does it.

`envFrom` first (in order), then `env` (later wins); `$(VAR)` references to
variables defined earlier are expanded, `$$` escapes a dollar. Values come
from literals, the pod's own fields (`fieldRef`), resources
(`resourceFieldRef`), Secrets and ConfigMaps. A missing Secret/ConfigMap or
key that is not `optional` raises `EnvError` (the kubelet reports
CreateContainerConfigError and retries).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]
# (namespace, name) -> data as text, or None when the object does not exist
Lookup = Callable[[str, str], "dict[str, str] | None"]

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class EnvError(Exception):
    """The environment cannot be built yet (missing Secret, ConfigMap or key)."""


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _REF.sub(sub, value)


def decode_secret(data: Mapping[str, str] | None) -> dict[str, str]:
    return {
        k: base64.b64decode(v).decode("utf-8", errors="replace") for k, v in (data or {}).items()
    }


def field_value(pod: Obj, path: str) -> str:
    """The value of a downward-API `fieldPath` for this pod."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple: dict[str, Callable[[], Any]] = {
        "metadata.name": lambda: meta.get("name"),
        "metadata.namespace": lambda: meta.get("namespace"),
        "metadata.uid": lambda: meta.get("uid"),
        "metadata.generateName": lambda: meta.get("generateName"),
        "metadata.labels": lambda: _format_map(meta.get("labels") or {}),
        "metadata.annotations": lambda: _format_map(meta.get("annotations") or {}),
        "spec.nodeName": lambda: spec.get("nodeName"),
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName"),
        "status.hostIP": lambda: status.get("hostIP") or "127.0.0.1",
        "status.hostIPs": lambda: status.get("hostIP") or "127.0.0.1",
        "status.podIP": lambda: status.get("podIP") or "127.0.0.1",
        "status.podIPs": lambda: status.get("podIP") or "127.0.0.1",
    }
    if path not in simple:
        raise EnvError(f"unsupported fieldPath {path!r}")
    value = simple[path]()
    return "" if value is None else str(value)


def _format_map(values: Mapping[str, str]) -> str:
    return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))


_CPU_SUFFIX = {"m": 0.001}
_MEM_SUFFIX = {
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
    "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
}  # fmt: skip


def _quantity(value: str) -> float:
    for suffix, factor in sorted({**_MEM_SUFFIX, **_CPU_SUFFIX}.items(), key=lambda s: -len(s[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def resource_value(container: Obj, ref: Obj, capacity: Mapping[str, str]) -> str:
    """`resourceFieldRef`: the limit (or request), else the node's capacity, / divisor."""
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "limits":
        raw = capacity.get(name)
    if raw is None:
        raw = "0"
    divisor = _quantity(str(ref.get("divisor") or "1"))
    value = _quantity(str(raw)) / divisor
    # The kubelet rounds up to an integer.
    return str(int(-(-value // 1)))


def resolve(
    pod: Obj,
    container: Obj,
    configmap: Lookup,
    secret: Lookup,
    capacity: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's env from its `envFrom` and `env` (without the runtime's base env)."""
    ns = str((pod.get("metadata") or {}).get("namespace", "default"))
    cname = container.get("name", "?")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if "configMapRef" in source:
            ref, kind, lookup = source["configMapRef"], "configmap", configmap
        elif "secretRef" in source:
            ref, kind, lookup = source["secretRef"], "secret", secret
        else:
            continue
        data = lookup(ns, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            raise EnvError(f'{kind} "{ref.get("name")}" not found (container {cname} envFrom)')
        for key, value in data.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], capacity or {})
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            is_cm = "configMapKeyRef" in source
            ref = source["configMapKeyRef" if is_cm else "secretKeyRef"]
            kind = "configmap" if is_cm else "secret"
            data = (configmap if is_cm else secret)(ns, ref.get("name", ""))
            optional = bool(ref.get("optional"))
            if data is None:
                if optional:
                    continue
                raise EnvError(f'{kind} "{ref.get("name")}" not found (env {name} of {cname})')
            if ref.get("key") not in data:
                if optional:
                    continue
                raise EnvError(
                    f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name')}"
                    f" (env {name} of {cname})"
                )
            env[name] = data[ref["key"]]
        else:
            raise EnvError(f"env {name} of {cname}: unsupported valueFrom {sorted(source)}")
    return env


def expand_args(values: list[str], env: Mapping[str, str]) -> list[str]:
    return [expand(v, env) for v in values]
