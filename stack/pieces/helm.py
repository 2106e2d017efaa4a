"""Helm 3, a tool on the stack's PATH (not a server).

Built by the control plane's one Go build (`stack/pieces/controlplane.py`): the
module `stack/controlplane` pins it as a `tool`, at the Helm release whose
Kubernetes libraries are the control plane's, so the packages both need are
compiled once; the release ldflags make `helm version` and the Kubernetes version
`helm template` assumes match them, as Helm's own Makefile does.
"""

from __future__ import annotations

import os
from pathlib import Path

from stack.errors import StackError
from stack.piece import Launch, Piece
from stack.pieces import controlplane as cp


class Helm(Piece):
    name = "helm"
    server = False
    first_build = cp.FIRST_BUILD

    @property
    def version(self) -> str:  # type: ignore[override]
        return cp.helm_version()

    def built(self) -> bool:
        return cp.kcp_built()

    @property
    def binary(self) -> Path:
        return cp.helm()

    def fetch(self) -> None:
        cp.fetch_kcp()

    def build(self) -> None:
        cp.build_kcp()

    def command(self) -> Launch:
        raise StackError(self.name, "helm is a tool, not a server: it is only built")

    def ready(self) -> bool:
        return self.binary.is_file()

    def env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "")
        return {"HELM": str(self.binary), "PATH": f"{cp.kcp_dir()}{os.pathsep}{path}"}
