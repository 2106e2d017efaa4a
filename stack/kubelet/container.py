"""From a pod's container spec to a process: argv, env and working dir."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.kubelet.envvars import expand_args
from stack.kubelet.images import Runtime
from stack.kubelet.mounts import PathMap

Obj = dict[str, Any]
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_ENV = "LINEAGEHUB_CONTAINER_ROOT"


@dataclass
class Process:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


CONTAINER_PATHS_ENV = "LINEAGEHUB_CONTAINER_PATHS"


def path_map(
    container: Obj,
    volumes: dict[str, Path],
    root: Path,
    termination_file: Path,
    mount_source: Any = None,
) -> PathMap:
    """The container's mounts (plus its termination-message path) as a PathMap."""
    pm = PathMap(root=root)
    for mount in container.get("volumeMounts") or []:
        vol = volumes.get(mount["name"])
        if vol is None:
            raise KeyError(f"volumeMount {mount['name']!r} names no volume of the pod")
        source = mount_source(vol, mount) if mount_source else vol
        pm.add(mount["mountPath"], source)
    pm.add(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH, termination_file)
    return pm


def service_account_kubeconfig(
    pm: PathMap, target: Path, namespace: str, api_host: str, api_port: str
) -> Path | None:
    """A kubeconfig for the pod's service account token, when one is mounted.

    Client libraries read the in-cluster token from a fixed path the kubelet
    cannot rewrite; with no file there they fall back to $KUBECONFIG, which
    the kubelet points at this file (token and CA from the mounted volume).
    """
    if SERVICE_ACCOUNT_DIR not in pm.mounts or not api_host:
        return None
    folder = Path(pm.mounts[SERVICE_ACCOUNT_DIR])
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": f"https://{api_host}:{api_port}",
            "certificate-authority": str(folder / "ca.crt")}}],
        "users": [{"name": "pod", "user": {"tokenFile": str(folder / "token")}}],
        "contexts": [{"name": "pod", "context": {
            "cluster": "local", "user": "pod", "namespace": namespace}}],
        "current-context": "pod",
    }  # fmt: skip
    target.write_text(json.dumps(doc, indent=1))
    return target


def base_env(
    runtime: Runtime, pod: Obj, root: Path, api_host: str, api_port: str
) -> dict[str, str]:
    """What every container sees before its own env: the image's and the platform's."""
    env = {
        "PATH": runtime.search_path(),
        "HOME": str(root),
        "HOSTNAME": str(pod["metadata"]["name"]),
        "LANG": "C.UTF-8",
        ROOT_ENV: str(root),
    }
    if api_host:
        env["KUBERNETES_SERVICE_HOST"] = api_host
        env["KUBERNETES_SERVICE_PORT"] = api_port
        env["KUBERNETES_SERVICE_PORT_HTTPS"] = api_port
    env.update(runtime.env)
    return env


def build(
    pod: Obj,
    container: Obj,
    runtime: Runtime,
    pm: PathMap,
    *,
    own_env: dict[str, str],
    base: dict[str, str],
) -> Process:
    """The process for one container: K8s command/args semantics, `$(VAR)` expansion,
    then container paths rewritten to host paths in argv and in the container's env."""
    meta = pod["metadata"]
    where = f"pod {meta['namespace']}/{meta['name']} container {container['name']}"
    command = expand_args(list(container.get("command") or []), own_env)
    args = expand_args(list(container.get("args") or []), own_env)
    argv = runtime.argv(command, args, where)
    env = {**base, **pm.rewrite_env(own_env)}
    if pm.mounts:
        # What a pod would see: lets the process name things (datasets in lineage) by
        # their path in the container rather than the host folder it reads them from.
        env[CONTAINER_PATHS_ENV] = json.dumps(
            {host: mount for mount, host in sorted(pm.mounts.items())}, sort_keys=True
        )
    argv = pm.rewrite_all(argv)
    workdir = container.get("workingDir") or ""
    cwd = Path(pm.host(posixpath.normpath(workdir))) if workdir else pm.root
    return Process(argv=argv, env=env, cwd=cwd)
