"""The Kubernetes control plane: etcd, kube-apiserver, controller-manager, scheduler.

All four run from one Go binary (`stack/controlplane`, built from the
k8s.io/kubernetes modules) as separate processes; its `kubectl` symlink is the
stack's kubectl.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx

from stack import paths, ports
from stack.gocompile import go_build
from stack.piece import Launch, Piece, build_log, content_key, http_ok
from stack.pki import ensure_pki

SOURCE = paths.REPO_ROOT / "stack" / "controlplane"
KUBERNETES_VERSION = "v1.35.4"
SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    # Removes the not-ready taint the API server puts on a new Node once it is Ready.
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "cronjob-controller",
    "replicaset-controller",
    "deployment-controller",
    "statefulset-controller",
    "endpointslice-controller",
)


def apiserver_url() -> str:
    return f"https://127.0.0.1:{ports.port('kube-apiserver')}"


def pki_dir() -> Path:
    return paths.state_dir() / "pki"


def admin_kubeconfig() -> Path:
    return pki_dir() / "admin.kubeconfig"


def _ldflags() -> str:
    """Stamp the release into the binary, as the Kubernetes release build does."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"-X {pkg}.gitVersion={KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(["-s", "-w", *stamps])


def kcp_dir() -> Path:
    """Cache folder of the control-plane binary, keyed by its build inputs."""
    key = content_key(
        *(SOURCE / f for f in ("go.mod", "go.sum", "main.go", "version.go")),
        extra=KUBERNETES_VERSION + _ldflags(),
    )
    return paths.cache_dir() / "bin" / f"kcp-{KUBERNETES_VERSION}-{key}"


def kcp() -> Path:
    return kcp_dir() / "kcp"


def build_kcp() -> None:
    """Build the binary once per input hash; a fresh machine builds it the same way."""
    target = kcp()
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    go_build(
        "controlplane",
        f"building the Kubernetes control plane (Go, k8s.io/kubernetes {KUBERNETES_VERSION})",
        package=".",
        flags=["-trimpath", f"-ldflags={_ldflags()}"],
        out=partial,
        cwd=SOURCE,
        env={**os.environ, "GOFLAGS": "-buildvcs=false"},
        log=build_log("controlplane"),
    )
    partial.rename(target)
    (target.parent / "kubectl").symlink_to("kcp")


def admin_client(timeout: float = 5.0) -> httpx.Client:
    """An httpx client that authenticates to the API server as the admin."""
    pki = pki_dir()
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return httpx.Client(base_url=apiserver_url(), verify=ctx, timeout=timeout)


def _healthy(port_name: str, path: str) -> bool:
    """A control-plane server answers 200 on `path` over TLS as the admin."""
    try:
        with admin_client(2.0) as client:
            client.base_url = httpx.URL(f"https://127.0.0.1:{ports.port(port_name)}")
            return client.get(path).status_code == 200
    except (httpx.HTTPError, OSError, ssl.SSLError):
        return False


class _ControlPlanePiece(Piece):
    version = KUBERNETES_VERSION
    first_build = (
        f"the Kubernetes control plane {KUBERNETES_VERSION} from its Go modules "
        "(~20 min cold, the bulk of a first run)"
    )

    def built(self) -> bool:
        return kcp().exists()

    def build(self) -> None:
        build_kcp()

    def prepare(self) -> None:
        ensure_pki(pki_dir(), apiserver_url())
        self.data.mkdir(parents=True, exist_ok=True)


class Etcd(_ControlPlanePiece):
    name = "etcd"
    version = "v3.6.5"
    port_names = ("etcd", "etcd-peer")

    def command(self) -> Launch:
        client, peer = self.ports
        return Launch(
            [
                str(kcp()),
                "etcd",
                str(self.data),
                f"http://127.0.0.1:{client}",
                f"http://127.0.0.1:{peer}",
            ]
        )

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.ports[0]}/health")


class KubeAPIServer(_ControlPlanePiece):
    name = "kube-apiserver"
    port_names = ("kube-apiserver",)
    ready_timeout = 180.0

    def command(self) -> Launch:
        pki = pki_dir()
        return Launch(
            [
                str(kcp()),
                "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{ports.port('etcd')}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports[0]}",
                f"--cert-dir={self.data}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                # A loopback address may not back the `kubernetes` Service's endpoints.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--watch-cache=true",
            ]
        )

    def ready(self) -> bool:
        return _healthy(self.name, "/readyz")

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(admin_kubeconfig())}


class KubeControllerManager(_ControlPlanePiece):
    name = "kube-controller-manager"
    port_names = ("kube-controller-manager",)

    def command(self) -> Launch:
        pki = pki_dir()
        kubeconfig = pki / "controller-manager.kubeconfig"
        return Launch(
            [
                str(kcp()),
                "kube-controller-manager",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports[0]}",
                f"--tls-cert-file={pki / 'controller-manager-serving.crt'}",
                f"--tls-private-key-file={pki / 'controller-manager-serving.key'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                "--concurrent-job-syncs=10",
            ]
        )

    def ready(self) -> bool:
        return _healthy(self.name, "/healthz")


class KubeScheduler(_ControlPlanePiece):
    name = "kube-scheduler"
    port_names = ("kube-scheduler",)

    def command(self) -> Launch:
        pki = pki_dir()
        kubeconfig = pki / "scheduler.kubeconfig"
        return Launch(
            [
                str(kcp()),
                "kube-scheduler",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports[0]}",
                f"--tls-cert-file={pki / 'scheduler-serving.crt'}",
                f"--tls-private-key-file={pki / 'scheduler-serving.key'}",
                "--leader-elect=false",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
            ]
        )

    def ready(self) -> bool:
        return _healthy(self.name, "/healthz")

    def env(self) -> dict[str, str]:
        return {"PATH": f"{kcp_dir()}{os.pathsep}{os.environ.get('PATH', '')}"}


CONTROL_PLANE: tuple[Piece, ...] = (
    Etcd(),
    KubeAPIServer(),
    KubeControllerManager(),
    KubeScheduler(),
)
