"""The Kubernetes control plane: etcd, kube-apiserver, controller-manager, scheduler.

All four run from one Go binary (`stack/controlplane`, built from the
k8s.io/kubernetes modules) as separate processes; its `kubectl` symlink is the
stack's kubectl. The same module pins Helm as a `tool`, at the release built on
the same Kubernetes libraries, and one `go build` makes both binaries: the
Kubernetes packages they share (the bulk of either build) are compiled once.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
from pathlib import Path

import httpx

from stack import paths, ports
from stack.errors import StackError
from stack.gocompile import go_build, go_plan
from stack.piece import Launch, Piece, build_lock, build_log, content_key, http_ok
from stack.pki import ensure_pki

SOURCE = paths.REPO_ROOT / "stack" / "controlplane"
KUBERNETES_VERSION = "v1.35.4"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
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
    # Claims bind to PersistentVolumes, and a claim or volume in use is only deleted
    # once no pod uses it (the API server's admission adds the finalizers these remove).
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
)


def apiserver_url() -> str:
    return f"https://127.0.0.1:{ports.port('kube-apiserver')}"


def pki_dir() -> Path:
    return paths.state_dir() / "pki"


def admin_kubeconfig() -> Path:
    return pki_dir() / "admin.kubeconfig"


def helm_version() -> str:
    """The Helm release `stack/controlplane/go.mod` pins."""
    found = re.search(r"^\s*helm\.sh/helm/v3 (v\S+)", (SOURCE / "go.mod").read_text(), re.M)
    if found is None:
        raise StackError("helm", f"no helm.sh/helm/v3 requirement in {SOURCE / 'go.mod'}")
    return found.group(1)


def _ldflags() -> str:
    """Stamp the releases into the binaries, as the Kubernetes and Helm release builds do
    (a -X for a package a binary does not link is ignored). Helm's Kubernetes version,
    which `helm template` assumes for `.Capabilities.KubeVersion`, is the one of the
    client-go it is compiled with: the control plane's, through the replace block."""
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
    stamps.append(f"-X helm.sh/helm/v3/internal/version.version={helm_version()}")
    for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        stamps += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(["-s", "-w", *stamps])


def kcp_dir() -> Path:
    """Cache folder of the control-plane and Helm binaries, keyed by their build inputs."""
    key = content_key(
        *(SOURCE / f for f in ("go.mod", "go.sum", "main.go", "version.go")),
        extra=KUBERNETES_VERSION + _ldflags(),
    )
    return paths.cache_dir() / "bin" / f"kcp-{KUBERNETES_VERSION}-{key}"


def kcp() -> Path:
    return kcp_dir() / "kcp"


def helm() -> Path:
    return kcp_dir() / "helm"


def kcp_built() -> bool:
    return kcp().is_file() and helm().is_file()


def _go_args() -> tuple[list[str], list[str], dict[str, str]]:
    """The packages, flags and environment of the one build (its plan uses them too)."""
    # GOTOOLCHAIN=local: never download another Go toolchain; a too-old local Go
    # fails naming the version it needs.
    env = {**os.environ, "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
    return [".", HELM_PACKAGE], ["-trimpath", f"-ldflags={_ldflags()}"], env


def fetch_kcp() -> None:
    """Download the modules the build needs (the network part of `build_kcp`)."""
    if kcp_built():
        return
    packages, flags, env = _go_args()
    go_plan(
        "controlplane",
        "the Kubernetes control plane and Helm (Go modules)",
        packages=packages,
        flags=flags,
        cwd=SOURCE,
        env=env,
        log=build_log("controlplane"),
    )


def build_kcp() -> None:
    """Build both binaries once per input hash; a fresh machine builds them the same way."""
    if kcp_built():
        return
    with build_lock(kcp_dir().name):
        # Checked again under the lock: another stack may have built it meanwhile.
        if not kcp_built():
            _compile_kcp()


def _compile_kcp() -> None:
    target = kcp_dir()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    packages, flags, env = _go_args()
    go_build(
        "controlplane",
        f"building the Kubernetes control plane {KUBERNETES_VERSION} and Helm "
        f"{helm_version()} (Go, one build)",
        packages=packages,
        flags=flags,
        out=partial,
        cwd=SOURCE,
        env=env,
        log=build_log("controlplane"),
    )
    # A binary is named after its package's last path element: the module's is kcp's.
    (partial / SOURCE.name).rename(partial / "kcp")
    (partial / "kubectl").symlink_to("kcp")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


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


#: Said by the first `stack up` on a machine (the control plane's pieces and Helm).
FIRST_BUILD = (
    f"the Kubernetes control plane {KUBERNETES_VERSION} and Helm from their Go modules in "
    "one build (855 CPU s: ~7.5 min on two idle cores, more on a busy machine; the bulk of "
    "a first run)"
)


class _ControlPlanePiece(Piece):
    version = KUBERNETES_VERSION
    first_build = FIRST_BUILD

    def built(self) -> bool:
        return kcp_built()

    def fetch(self) -> None:
        fetch_kcp()

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
