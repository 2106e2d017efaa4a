"""The Helm chart against the local API server, for real.

* every object of the full chart (all pieces on) is checked by the API server with
  `kubectl apply --dry-run=server`, in a namespace that warns on Pod Security
  "restricted" violations;
* `helm install` with the data-plane pieces off (pointing at loopback endpoints) and
  the operator and consumers on, into a namespace that *enforces* "restricted": the
  project image is mapped to this checkout by the process kubelet, so the operator
  pod really runs under the chart's ServiceAccount and ClusterRole;
* `helm upgrade` changes the Deployment, `helm uninstall` leaves nothing behind;
* a wrong value type makes `helm install` fail naming the field, installing nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from stack.pieces.helm import Helm

if TYPE_CHECKING:
    from tests.conftest import Kubectl, StackHandle

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lineage-hub"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HelmRunner:
    def __init__(self, stack: StackHandle, home: Path) -> None:
        piece = Helm()
        if not piece.ready():
            piece.build()
        self.binary = piece.binary
        self.env = {
            **os.environ,
            **stack.env,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}\n{done.stdout}\n{done.stderr}")
        return done


@pytest.fixture
def helm(stack: StackHandle, tmp_path: Path) -> HelmRunner:
    return HelmRunner(stack, tmp_path / "helm")


def sets(values: dict[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += ["--set", f"{key}={value}"]
    return out


def external_values(stack: StackHandle, namespace: str) -> dict[str, str]:
    """Data plane off, pointed at loopback endpoints; operator and consumers on, as the
    project image, health endpoints on free loopback ports."""
    return {
        "image.repository": "lineage-hub",
        "image.tag": "dev",
        "image.pullPolicy": "Never",
        "kafka.enabled": "false",
        # A closed loopback port: the shared stack's topics are left to its own consumers
        # (the operator's publisher is lazy; the consumers wait and retry).
        "kafka.bootstrap": f"127.0.0.1:{free_port()}",
        "kafka.topics.create": "false",
        "marquez.enabled": "false",
        "marquez.url": stack.env.get("MARQUEZ_URL", "http://127.0.0.1:5000"),
        "clickhouse.enabled": "false",
        "clickhouse.url": "clickhouse://default:@127.0.0.1:9000/otel",
        "jaeger.enabled": "false",
        "jaeger.url": stack.env.get("JAEGER_QUERY_URL", "http://127.0.0.1:16686"),
        "grafana.enabled": "false",
        # The stack's own operator watches the cluster; this one only the test namespace.
        "operator.watchNamespaces": "{" + namespace + "}",
        "operator.healthHost": "127.0.0.1",
        "operator.healthPort": str(free_port()),
        "consumers.healthHost": "127.0.0.1",
        "consumers.lineage.healthPort": str(free_port()),
        "consumers.otel.healthPort": str(free_port()),
    }


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json").stdout)
    return data


def wait_for(what: str, probe: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def restricted(kubectl: Kubectl, namespace: str, mode: str) -> None:
    kubectl(
        "label",
        "namespace",
        namespace,
        "--overwrite",
        f"pod-security.kubernetes.io/{mode}=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )


def test_full_chart_is_accepted_by_the_api_server(
    helm: HelmRunner, kubectl: Kubectl, namespace: str
) -> None:
    """All pieces on (and the templated CRD, NodePorts): server-side dry run, no PSA warning."""
    restricted(kubectl, namespace, "warn")
    for extra in ([], ["--set", "crds.create=true", "--set", "nodePorts.enabled=true"]):
        rendered = helm("template", "hub", str(CHART), "--namespace", namespace, *extra).stdout
        done = kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "would violate PodSecurity" not in done.stderr, done.stderr
        assert "deployment.apps/hub-lineage-hub-operator created (server dry run)" in done.stdout


def test_install_upgrade_uninstall(
    stack: StackHandle, helm: HelmRunner, kubectl: Kubectl, namespace: str
) -> None:
    restricted(kubectl, namespace, "enforce")
    release = f"h{uuid.uuid4().hex[:8]}"
    prefix = f"{release}-lineage-hub"
    values = external_values(stack, namespace)
    installed = helm(
        "install", release, str(CHART), "--namespace", namespace, *sets(values), "--timeout", "3m"
    )
    assert "STATUS: deployed" in installed.stdout
    assert "kubectl apply -f examples/pipelinerun.yaml" in installed.stdout  # NOTES.txt

    # The CRD (from crds/, or already there), the RBAC, the workloads and their Services.
    kubectl("get", "crd", "pipelineruns.lineagehub.io")
    role = get_json(kubectl, "clusterrole", f"{prefix}-operator")
    assert any("pipelineruns/status" in rule["resources"] for rule in role["rules"])
    binding = get_json(kubectl, "clusterrolebinding", f"{prefix}-operator")
    assert binding["subjects"][0]["namespace"] == namespace
    kubectl("get", "serviceaccount", f"{prefix}-operator", "-n", namespace)
    deployments = get_json(kubectl, "deployments", "-n", namespace)["items"]
    assert {d["metadata"]["name"] for d in deployments} == {
        f"{prefix}-operator",
        f"{prefix}-consume-lineage",
        f"{prefix}-consume-otel",
    }
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    services = {
        s["metadata"]["name"] for s in get_json(kubectl, "services", "-n", namespace)["items"]
    }
    assert services == {f"{prefix}-consume-lineage", f"{prefix}-consume-otel"}

    # Pod Security "restricted" is enforced here: the pods exist only if they comply.
    def pods_created() -> set[str]:
        items = get_json(kubectl, "pods", "-n", namespace)["items"]
        return {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in items}

    wait_for(
        "the operator and consumer pods",
        lambda: pods_created() >= {"operator", "consume-lineage", "consume-otel"},
    )

    # The operator pod runs (process kubelet, project image = this checkout) with the
    # chart's ServiceAccount and ClusterRole; kopf answers its liveness endpoint.
    health = f"http://127.0.0.1:{values['operator.healthPort']}/healthz"

    def operator_alive() -> bool:
        try:
            return httpx.get(health, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(f"the operator's liveness endpoint {health}", operator_alive, timeout=120)

    # helm upgrade: a changed value reaches the Deployment.
    upgraded = helm(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        *sets(values),
        "--set",
        "operator.pollSeconds=5",
    )
    assert "REVISION: 2" in upgraded.stdout
    operator = get_json(kubectl, "deployment", f"{prefix}-operator", "-n", namespace)
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LINEAGEHUB_POLL_SECONDS"] == "5"

    # helm uninstall: nothing of the release is left, the CRD stays.
    helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m")
    selector = f"app.kubernetes.io/instance={release}"

    def leftovers() -> str:
        namespaced = kubectl(
            "get",
            "deployments,replicasets,services,serviceaccounts,secrets,configmaps,jobs",
            "-n",
            namespace,
            "-l",
            selector,
            "-o",
            "name",
        ).stdout.strip()
        cluster = kubectl(
            "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
        ).stdout.strip()
        return (namespaced + "\n" + cluster).strip()

    wait_for("the release's objects to be gone", lambda: leftovers() == "" or None, timeout=60)
    kubectl("get", "crd", "pipelineruns.lineagehub.io")
    assert release not in helm("list", "--namespace", namespace, "--all").stdout

    def no_pods() -> bool:
        return not get_json(kubectl, "pods", "-n", namespace, "-l", selector)["items"]

    wait_for("the release's pods to be gone", no_pods, timeout=90)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ("operator.healthPort=eighty", "/operator/healthPort"),
        ("kafka.enabled=yes", "/kafka/enabled"),
    ],
)
def test_wrong_value_type_fails_naming_the_field(
    helm: HelmRunner, kubectl: Kubectl, namespace: str, item: str, field: str
) -> None:
    release = f"bad{uuid.uuid4().hex[:6]}"
    done = helm(
        "install", release, str(CHART), "--namespace", namespace, "--set", item, check=False
    )
    assert done.returncode != 0
    assert field in done.stderr, done.stderr
    assert release not in helm("list", "--namespace", namespace, "--all").stdout
    assert not get_json(kubectl, "deployments", "-n", namespace)["items"]
