"""Helm 3, built from its Go module (pinned in `stack/gotools/helm`). Not a server.

Built with the release ldflags so `helm version` and the Kubernetes version
that `helm template` assumes (`.Capabilities.KubeVersion`) match the
client-go it was compiled against, as Helm's own Makefile does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stack.errors import StackError
from stack.piece import Launch, Piece
from stack.pieces._gobuild import GOTOOLS, binary_path, go_build, is_built

HELM_VERSION = "v3.22.0"
PACKAGE = "helm.sh/helm/v3/cmd/helm"


def _client_go_version(go_mod: Path) -> tuple[int, int]:
    """(major, minor) Kubernetes version of the client-go the build selects."""
    match = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.\d+", go_mod.read_text(), re.MULTILINE)
    if match is None:
        raise StackError("helm", f"no k8s.io/client-go requirement in {go_mod}")
    return 1, int(match.group(1))


def helm_ldflags(version: str) -> str:
    major, minor = _client_go_version(GOTOOLS / "helm" / "go.mod")
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={version}"]
    for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


class Helm(Piece):
    name = "helm"
    version = HELM_VERSION
    server = False
    first_build = "Helm from its Go module (~5 min)"

    def built(self) -> bool:
        return is_built(self.name, self.version, helm_ldflags(self.version))

    @property
    def binary(self) -> Path:
        return binary_path(self.name, self.version)

    @property
    def bin_dir(self) -> Path:
        """A dir holding just `helm`, for PATH."""
        return self.binary.parent / f"helm-{self.version}.d"

    def build(self) -> None:
        go_build(self.name, self.name, self.version, PACKAGE, helm_ldflags(self.version))
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        link = self.bin_dir / "helm"
        if not (link.is_symlink() and link.resolve() == self.binary.resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(self.binary)

    def command(self) -> Launch:
        raise StackError(self.name, "helm is a tool, not a server: it is only built")

    def ready(self) -> bool:
        return self.binary.is_file()

    def env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "")
        return {"HELM": str(self.binary), "PATH": f"{self.bin_dir}{os.pathsep}{path}"}
