"""The process kubelet: node `local`, running pods' containers as local processes.

See stack/kubelet/. It authenticates as the node (`system:node:local`, so the
Node authorizer and NodeRestriction apply as they would to a real kubelet)
when the control plane wrote that identity, else as the admin; it serves
`kubectl logs` over TLS with the kubelet serving certificate and accepts the
apiserver's kubelet-client certificate (signed by the cluster CA).

Container processes run in their own sessions and outlive a kubelet restart
(the kubelet re-adopts them). `after_stop()` ends them when the stack goes
down; a kubelet that starts ends those whose pods are no longer in the API.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from stack import paths
from stack.piece import Launch, Piece, port_open
from stack.pieces.controlplane import admin_client

NODE_NAME = "local"
IMAGES = paths.REPO_ROOT / "stack" / "kubelet" / "images.yaml"


def pki_dir() -> Path:
    return paths.state_dir() / "pki"


def kubeconfig() -> Path:
    node = pki_dir() / f"node-{NODE_NAME}.kubeconfig"
    return node if node.exists() else pki_dir() / "admin.kubeconfig"


class Kubelet(Piece):
    name = "kubelet"
    version = "v1.35.4"
    port_names = ("kubelet",)
    ready_timeout = 60.0
    stop_timeout = 10.0

    def _argv(self, action: str = "run") -> list[str]:
        pki = pki_dir()
        return [
            sys.executable,
            "-m",
            "stack.kubelet",
            action,
            f"--kubeconfig={kubeconfig()}",
            f"--node-name={NODE_NAME}",
            f"--port={self.ports[0]}",
            f"--state-dir={self.data}",
            f"--tls-cert={pki / 'kubelet.crt'}",
            f"--tls-key={pki / 'kubelet.key'}",
            f"--client-ca={pki / 'ca.crt'}",
            f"--images={IMAGES}",
        ]

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)

    def command(self) -> Launch:
        return Launch(self._argv(), cwd=paths.REPO_ROOT)

    def ready(self) -> bool:
        """The kubelet serves, and node `local` is Ready in the API."""
        if not port_open(self.ports[0]):
            return False
        try:
            with admin_client(2.0) as client:
                resp = client.get(f"/api/v1/nodes/{NODE_NAME}")
        except (httpx.HTTPError, OSError, ssl.SSLError):
            return False
        if resp.status_code != 200:
            return False
        conditions = resp.json().get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def after_stop(self) -> None:
        """End the pods' processes (they outlive the kubelet by design)."""
        subprocess.run(
            [sys.executable, "-m", "stack.kubelet", "stop-pods", f"--state-dir={self.data}"],
            cwd=paths.REPO_ROOT,
            check=False,
            capture_output=True,
        )


KUBELET: tuple[Piece, ...] = (Kubelet(),)
