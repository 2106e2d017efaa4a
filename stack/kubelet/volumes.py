"""Pod volumes as host folders.

| volume | host folder |
| --- | --- |
| emptyDir, ephemeral | `<pod dir>/volumes/<name>` (removed with the pod) |
| hostPath | the path itself (created for DirectoryOrCreate / FileOrCreate) |
| configMap, secret, downwardAPI, projected | `<pod dir>/volumes/<name>`, written at start |
| persistentVolumeClaim | `<state dir>/volumes/pvc/<namespace>/<claim>` (outlives pods) |

A missing ConfigMap/Secret that is not optional raises `VolumeError` (the
kubelet keeps the pod Pending with reason ContainerCreating and retries).
"""

from __future__ import annotations

import base64
import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stack.kubelet.envvars import EnvError, field_value

Obj = dict[str, Any]
Fetch = Callable[[str, str], "Obj | None"]
TokenFetch = Callable[[str, str, Obj], str]


class VolumeError(Exception):
    """A volume cannot be set up (yet)."""


class Sources:
    """How volumes reach the API: ConfigMaps, Secrets, service account tokens."""

    def __init__(self, configmap: Fetch, secret: Fetch, token: TokenFetch) -> None:
        self.configmap = configmap
        self.secret = secret
        self.token = token


def _safe_rel(path: str) -> str:
    rel = posixpath.normpath(path)
    if rel.startswith(("/", "..")):
        raise VolumeError(f"volume item path {path!r} must be relative and stay inside the volume")
    return rel


def _write(root: Path, rel: str, data: bytes, mode: int | None) -> None:
    target = root / _safe_rel(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    if mode is not None:
        tmp.chmod(mode & 0o777 | 0o600)  # the process runs as us: keep it readable
    tmp.replace(target)


def _object_files(obj: Obj, secret: bool) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        files[key] = base64.b64decode(value) if secret else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        files[key] = base64.b64decode(value)
    return files


def _key_projection(
    root: Path, src: Obj, obj: Obj | None, what: str, *, secret: bool, default_mode: int | None
) -> None:
    if obj is None:
        if src.get("optional"):
            return
        raise VolumeError(f"{what} not found")
    files = _object_files(obj, secret)
    items = src.get("items")
    if not items:
        for key, data in files.items():
            _write(root, key, data, default_mode)
        return
    for item in items:
        if item["key"] not in files:
            if src.get("optional"):
                continue
            raise VolumeError(f"{what} has no key {item['key']!r}")
        _write(root, item["path"], files[item["key"]], item.get("mode", default_mode))


def _downward(root: Path, pod: Obj, items: list[Obj], default_mode: int | None) -> None:
    for item in items:
        if "fieldRef" not in item:
            continue  # resourceFieldRef: not modelled by a process
        try:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        except EnvError as exc:
            raise VolumeError(str(exc)) from exc
        _write(root, item["path"], value.encode(), item.get("mode", default_mode))


def prepare(pod: Obj, pod_dir: Path, state_dir: Path, sources: Sources) -> dict[str, Path]:
    """Create every volume of the pod; returns volume name → host path."""
    meta = pod["metadata"]
    ns, pod_name = meta["namespace"], meta["name"]
    spec = pod.get("spec") or {}
    out: dict[str, Path] = {}
    for vol in spec.get("volumes") or []:
        name = vol["name"]
        here = pod_dir / "volumes" / name
        if "emptyDir" in vol or "ephemeral" in vol:
            here.mkdir(parents=True, exist_ok=True)
            out[name] = here
        elif "hostPath" in vol:
            hp = vol["hostPath"]
            path = Path(hp["path"])
            kind = hp.get("type") or ""
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(exist_ok=True)
            elif kind == "Directory" and not path.is_dir():
                raise VolumeError(f"hostPath {path} is not a directory")
            elif kind == "File" and not path.is_file():
                raise VolumeError(f"hostPath {path} is not a file")
            out[name] = path
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            path = state_dir / "volumes" / "pvc" / ns / claim
            path.mkdir(parents=True, exist_ok=True)
            out[name] = path
        elif "configMap" in vol:
            src = vol["configMap"]
            here.mkdir(parents=True, exist_ok=True)
            obj = sources.configmap(ns, src.get("name", ""))
            what = f'configmap "{src.get("name")}" (volume {name})'
            _key_projection(here, src, obj, what, secret=False, default_mode=src.get("defaultMode"))
            out[name] = here
        elif "secret" in vol:
            src = vol["secret"]
            here.mkdir(parents=True, exist_ok=True)
            obj = sources.secret(ns, src.get("secretName", ""))
            what = f'secret "{src.get("secretName")}" (volume {name})'
            _key_projection(here, src, obj, what, secret=True, default_mode=src.get("defaultMode"))
            out[name] = here
        elif "downwardAPI" in vol:
            here.mkdir(parents=True, exist_ok=True)
            src = vol["downwardAPI"]
            _downward(here, pod, src.get("items") or [], src.get("defaultMode"))
            out[name] = here
        elif "projected" in vol:
            here.mkdir(parents=True, exist_ok=True)
            src = vol["projected"]
            mode = src.get("defaultMode")
            for part in src.get("sources") or []:
                if "configMap" in part:
                    ref = part["configMap"]
                    what = f'configmap "{ref.get("name")}" (volume {name})'
                    obj = sources.configmap(ns, ref.get("name", ""))
                    _key_projection(here, ref, obj, what, secret=False, default_mode=mode)
                elif "secret" in part:
                    ref = part["secret"]
                    what = f'secret "{ref.get("name")}" (volume {name})'
                    sec = sources.secret(ns, ref.get("name", ""))
                    _key_projection(here, ref, sec, what, secret=True, default_mode=mode)
                elif "downwardAPI" in part:
                    _downward(here, pod, part["downwardAPI"].get("items") or [], mode)
                elif "serviceAccountToken" in part:
                    sat = part["serviceAccountToken"]
                    token_spec: Obj = {
                        "expirationSeconds": sat.get("expirationSeconds", 3607),
                        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                           "name": pod_name, "uid": meta["uid"]},
                    }  # fmt: skip
                    if sat.get("audience"):
                        token_spec["audiences"] = [sat["audience"]]
                    sa = spec.get("serviceAccountName") or "default"
                    try:
                        token = sources.token(ns, sa, token_spec)
                    except Exception as exc:
                        raise VolumeError(f"token for service account {sa}: {exc}") from exc
                    _write(here, sat.get("path", "token"), token.encode(), mode)
            out[name] = here
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise VolumeError(
                f"volume {name}: type {kinds} is not supported by the process kubelet"
            )
    return out


def mount_source(volume_path: Path, mount: Obj) -> Path:
    """The host path a volumeMount shows (its volume folder, or a subPath inside it)."""
    sub = mount.get("subPath") or ""
    if not sub:
        return volume_path
    target = volume_path / _safe_rel(sub)
    if not target.exists() and volume_path.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    return target


def remove_tree(path: Path) -> None:
    """rm -rf that never follows symlinks out of the tree (hostPath links stay safe)."""
    if not path.exists() and not path.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for fname in filenames:
            Path(dirpath, fname).unlink(missing_ok=True)
        for dname in dirnames:
            p = Path(dirpath, dname)
            if p.is_symlink():
                p.unlink()
            else:
                p.rmdir()
    path.rmdir()
