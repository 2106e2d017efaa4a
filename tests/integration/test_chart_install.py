"""The Helm chart against the local API server, for real.

* every object of the full chart (all pieces on) is checked by the API server with
  `kubectl apply --dry-run=server`, in a namespace that warns on Pod Security
  "restricted" violations;
* `helm install` with the data-plane pieces off (pointing at loopback endpoints) and
  the operator and consumers on, into a namespace that *enforces* "restricted": the
  project image is mapped to this checkout by the process kubelet, so the operator
  pod really runs under the chart's ServiceAccount and ClusterRole;
* the gateway pod of that install answers on loopback and reads PipelineRuns through
  the chart's Role with the chart's generated token;
* `helm upgrade` changes the Deployment (and keeps the generated token), `helm uninstall`
  leaves nothing behind;
* a PipelineRun applied to a namespace of its own reaches Succeeded through the
  Helm-installed operator (the stack's own operator stopped meanwhile), its stage pods
  run by the process kubelet from the project image, on the stack's data volume;
* a wrong value type makes `helm install` fail naming the field, installing nothing.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from stack import supervisor
from stack.piece import http_ok
from stack.pieces import app
from stack.pieces.helm import Helm
from stack.registry import select

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
        "marquez.url": stack.env["MARQUEZ_URL"],
        "clickhouse.enabled": "false",
        "clickhouse.url": "clickhouse://default:@127.0.0.1:9000/otel",
        "jaeger.enabled": "false",
        "jaeger.url": stack.env["JAEGER_QUERY_URL"],
        "grafana.enabled": "false",
        "prometheus.enabled": "false",  # an upstream image the process kubelet cannot run
        # The stack's own operator watches the cluster; this one only the test namespace.
        "operator.watchNamespaces": "{" + namespace + "}",
        "operator.healthHost": "127.0.0.1",
        "operator.healthPort": str(free_port()),
        "consumers.healthHost": "127.0.0.1",
        "consumers.lineage.healthPort": str(free_port()),
        "consumers.otel.healthPort": str(free_port()),
        # The gateway on loopback too (a pod's 0.0.0.0 is the host's here).
        "gateway.host": "127.0.0.1",
        "gateway.port": str(free_port()),
    }


def gateway_token(kubectl: Kubectl, namespace: str, secret: str) -> str:
    """The token of the chart's generated gateway Secret (`token:scopes`)."""
    data = get_json(kubectl, "secret", secret, "-n", namespace)["data"]["tokens"]
    return base64.b64decode(data).decode().split(":", 1)[0]


def gateway_dependency(base: str, name: str, token: str) -> dict[str, Any] | None:
    """One dependency of the gateway's /api/v1/health (a token sees the detail), None
    until it answers."""
    try:
        reply = httpx.get(
            f"{base}/api/v1/health", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    except httpx.HTTPError:
        return None
    found: dict[str, Any] | None = reply.json().get("dependencies", {}).get(name)
    return found


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


# Every switch of values.yaml in some combination: each object is checked by the API
# server (schemas, defaulting, admission incl. Pod Security "restricted" warnings).
COMBINATIONS = {
    "defaults": [],
    "crds-and-nodeports": ["crds.create=true", "nodePorts.enabled=true"],
    "kind": ["-f", "values-kind.yaml"],
    "external-services": [
        "kafka.enabled=false",
        "kafka.bootstrap=kafka.data.svc:9092",
        "postgresql.enabled=false",
        "marquez.enabled=false",
        "marquez.url=http://marquez.data.svc:5000",
        "clickhouse.enabled=false",
        "clickhouse.url=clickhouse://reader:s3cret@ch.data.svc:9000/otel",
        "jaeger.enabled=false",
        "jaeger.url=https://jaeger.example.com",
        "grafana.enabled=false",
    ],
    "persistence": [
        "kafka.persistence.enabled=true",
        "postgresql.persistence.enabled=true",
        "clickhouse.persistence.enabled=true",
        "kafka.topics.create=false",
        "marquez.web.enabled=false",
    ],
    "app-off": [
        "operator.enabled=false",
        "consumers.lineage.enabled=false",
        "consumers.otel.enabled=false",
        "gateway.enabled=false",
    ],
    "gateway-cluster-wide": [
        "gateway.rbac.clusterWide=true",
        "gateway.auth.existingSecret=my-gateway-tokens",
        "gateway.serviceAccount.name=gw",
        "nodePorts.enabled=true",
    ],
    "gateway-open-no-rbac": [
        "gateway.auth.enabled=false",
        "gateway.rbac.create=false",
        "gateway.corsOrigins={https://a.example}",
        # The operator's Role, RoleBinding and stage NetworkPolicy go into each watched
        # namespace: the test's own (a dry run applies into one namespace).
        "operator.watchNamespaces={NAMESPACE}",
        "operator.workspace.hostPath=/var/lib/runs",
        "operator.data.hostPath=/data",
    ],
}


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_chart_is_accepted_by_the_api_server(
    helm: HelmRunner, kubectl: Kubectl, namespace: str, combination: str
) -> None:
    """Server-side dry run of `helm template` for each combination, no PSA warning."""
    restricted(kubectl, namespace, "warn")
    args: list[str] = []
    for item in COMBINATIONS[combination]:
        if item == "-f":
            args.append(item)
        elif item.endswith(".yaml"):
            args.append(str(CHART / item))
        else:
            args += ["--set", item.replace("NAMESPACE", namespace)]
    rendered = helm("template", "hub", str(CHART), "--namespace", namespace, *args).stdout
    done = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "would violate PodSecurity" not in done.stderr, done.stderr
    kinds = {line.split("/", 1)[0] for line in done.stdout.splitlines()}
    if combination != "app-off":
        assert "deployment.apps/hub-lineage-hub-operator created (server dry run)" in done.stdout
        assert "deployment.apps/hub-lineage-hub-gateway created (server dry run)" in done.stdout
    if combination == "gateway-cluster-wide":
        assert "clusterrole.rbac.authorization.k8s.io/hub-lineage-hub-gateway" in done.stdout
    elif combination not in {"app-off", "gateway-open-no-rbac"}:
        assert "role.rbac.authorization.k8s.io/hub-lineage-hub-gateway" in done.stdout
    if combination == "gateway-open-no-rbac":
        assert "role.rbac.authorization.k8s.io/hub-lineage-hub-operator" in done.stdout
        assert "networkpolicy.networking.k8s.io/hub-lineage-hub-stage-egress" in done.stdout
    assert kinds, done.stdout


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
    # Watching the test namespace only: the operator's rights on runs are a Role there,
    # and cluster-wide it may only list and watch CRDs and namespaces.
    role = get_json(kubectl, "role", f"{prefix}-operator", "-n", namespace)
    assert any("pipelineruns/status" in rule["resources"] for rule in role["rules"])
    binding = get_json(kubectl, "rolebinding", f"{prefix}-operator", "-n", namespace)
    assert binding["subjects"][0]["namespace"] == namespace
    cluster_role = get_json(kubectl, "clusterrole", f"{prefix}-operator")
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    binding = get_json(kubectl, "clusterrolebinding", f"{prefix}-operator")
    assert binding["subjects"][0]["namespace"] == namespace
    kubectl("get", "serviceaccount", f"{prefix}-operator", "-n", namespace)
    deployments = get_json(kubectl, "deployments", "-n", namespace)["items"]
    assert {d["metadata"]["name"] for d in deployments} == {
        f"{prefix}-operator",
        f"{prefix}-consume-lineage",
        f"{prefix}-consume-otel",
        f"{prefix}-gateway",
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
    assert services == {f"{prefix}-consume-lineage", f"{prefix}-consume-otel", f"{prefix}-gateway"}
    gateway_role = get_json(kubectl, "role", f"{prefix}-gateway", "-n", namespace)
    assert gateway_role["rules"] == [
        {
            "apiGroups": ["lineagehub.io"],
            "resources": ["pipelineruns"],
            "verbs": ["create", "get", "list", "patch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},  # the console
    ]
    token = gateway_token(kubectl, namespace, f"{prefix}-gateway")

    # Pod Security "restricted" is enforced here: the pods exist only if they comply.
    def pods_created() -> set[str]:
        items = get_json(kubectl, "pods", "-n", namespace)["items"]
        return {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in items}

    wait_for(
        "the operator, consumer and gateway pods",
        lambda: pods_created() >= {"operator", "consume-lineage", "consume-otel", "gateway"},
    )

    # The operator pod runs (process kubelet, project image = this checkout) with the
    # chart's ServiceAccount and ClusterRole; kopf answers its liveness endpoint.
    health = f"http://127.0.0.1:{values['operator.healthPort']}/healthz"

    wait_for(f"the operator's liveness endpoint {health}", partial(http_ok, health), timeout=120)

    # The gateway pod: its ServiceAccount lists PipelineRuns through the chart's Role (its
    # Kubernetes health check), the generated token is accepted, no token is not.
    gateway = f"http://127.0.0.1:{values['gateway.port']}"
    # Its first check may be "down" for a while (3 s to answer, kept for the cache's
    # interval, on a loaded machine): wait for the check to pass, not for its first answer.
    said: list[dict[str, Any] | None] = [None]

    def kube_ok() -> bool:
        said[0] = gateway_dependency(gateway, "kubernetes", token)
        return said[0] is not None and said[0]["status"] == "ok"

    try:
        wait_for("the gateway's Kubernetes check to pass", kube_ok, timeout=120)
    except AssertionError as err:
        raise AssertionError(f"{err}; it said {said[0]}") from None
    kafka = gateway_dependency(gateway, "kafka", token)
    assert kafka is not None and kafka["status"] == "down"  # the closed port given above
    runs = httpx.get(
        f"{gateway}/api/v1/pipeline/runs",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert runs.status_code == 200, runs.text
    assert runs.json()["namespace"] == namespace
    assert httpx.get(f"{gateway}/api/v1/pipeline/runs", timeout=10).status_code == 401

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
    # The generated gateway token is kept across upgrades (`lookup`).
    assert gateway_token(kubectl, namespace, f"{prefix}-gateway") == token

    # helm uninstall: nothing of the release is left, the CRD stays.
    helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m")
    selector = f"app.kubernetes.io/instance={release}"

    def leftovers() -> str:
        namespaced = kubectl(
            "get",
            "deployments,replicasets,services,serviceaccounts,secrets,configmaps,jobs,"
            "roles,rolebindings",
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


EXAMPLE = ROOT / "examples" / "pipelinerun.yaml"


def example_run(namespace: str) -> dict[str, Any]:
    """examples/pipelinerun.yaml in `namespace`, its sink in a folder of that namespace
    (the stack's data volume is shared with every other run)."""
    run: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    run["metadata"]["namespace"] = namespace
    sink = run["spec"]["sink"]
    assert sink["uri"].startswith("file:///data/output/"), sink
    sink["uri"] = sink["uri"].replace("/data/output/", f"/data/output/{namespace}/", 1)
    return run


def host_path_for_the_operator_pod(path: Path) -> str:
    """`path` as the Helm-installed operator must receive it on the local stack.

    The process kubelet rewrites env values that start with one of the container's mount
    paths (stack/kubelet/mounts.py); the operator pod mounts an emptyDir at /tmp and the
    stack's state lives under /tmp by default, so `/tmp/...` would be redirected into
    that emptyDir. A leading `//` names the same folder (POSIX) and is left alone."""
    return "/" + str(path) if str(path).startswith("/tmp/") else str(path)


@pytest.mark.dataplane
@pytest.mark.timeout(900)
def test_pipelinerun_succeeds_through_the_helm_installed_operator(
    stack: StackHandle, helm: HelmRunner, kubectl: Kubectl, namespace: str
) -> None:
    """The user's path on the local cluster: `helm install` the operator (data plane
    pointed at the stack's loopback services), apply the example, wait for Succeeded."""
    release = f"r{uuid.uuid4().hex[:8]}"
    prefix = f"{release}-lineage-hub"
    gateway_port = free_port()
    values = {
        "image.repository": "lineage-hub",  # stack/kubelet/images.yaml: this checkout
        "image.tag": "dev",
        "image.pullPolicy": "Never",
        "kafka.enabled": "false",
        "kafka.bootstrap": stack.env["KAFKA_BOOTSTRAP"],
        "kafka.topics.create": "false",  # the stack made them
        "postgresql.enabled": "false",
        "marquez.enabled": "false",
        "marquez.url": stack.env["MARQUEZ_URL"],
        "clickhouse.enabled": "false",
        "jaeger.enabled": "false",
        "jaeger.url": stack.env["JAEGER_QUERY_URL"],
        "grafana.enabled": "false",
        "prometheus.enabled": "false",  # an upstream image the process kubelet cannot run
        # The stack's own consumers read the topics; two groups would split the work.
        "consumers.lineage.enabled": "false",
        "consumers.otel.enabled": "false",
        "operator.watchNamespaces": "{" + namespace + "}",
        "operator.healthHost": "127.0.0.1",
        "operator.healthPort": str(free_port()),
        "operator.pollSeconds": "5",
        "operator.verifyTimeoutSeconds": "60",
        "operator.runnerImage": "lineage-hub:dev",
        "operator.data.hostPath": host_path_for_the_operator_pod(app.data_volume()),
        "operator.data.mountPath": "/data",
        "operator.workspace.hostPath": host_path_for_the_operator_pod(app.workspaces()),
        "gateway.host": "127.0.0.1",
        "gateway.port": str(gateway_port),
    }
    # What the stack's otel consumer holds of a run's trace, for the operator's check.
    extra_env = [
        "--set",
        "operator.extraEnv[0].name=LINEAGEHUB_TRACE_STORE_URL",
        "--set",
        f"operator.extraEnv[0].value={stack.env['LINEAGEHUB_TRACE_STORE_URL']}",
    ]
    (stack_operator,) = select(["operator"])
    supervisor.stop(stack_operator)  # it watches every namespace: it would take the run
    try:
        helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            *sets(values),
            *extra_env,
            "--timeout",
            "3m",
        )
        deployment = get_json(kubectl, "deployment", f"{prefix}-operator", "-n", namespace)
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert Path(env["LINEAGEHUB_DATA_HOST_PATH"]).samefile(app.data_volume())
        assert Path(env["LINEAGEHUB_WORKSPACE_HOST_PATH"]).samefile(app.workspaces())
        assert env["LINEAGEHUB_RUNNER_IMAGE"] == "lineage-hub:dev"
        health = f"http://127.0.0.1:{values['operator.healthPort']}/healthz"

        wait_for(f"the Helm-installed operator at {health}", partial(http_ok, health), timeout=120)

        run = example_run(namespace)
        name = run["metadata"]["name"]
        kubectl("apply", "-f", "-", input=json.dumps(run))

        def finished() -> str | None:
            obj = get_json(kubectl, "pipelinerun", name, "-n", namespace)
            phase = (obj.get("status") or {}).get("phase")
            return phase if phase in {"Succeeded", "Failed", "Cancelled"} else None

        # A failed run never meets condition=Succeeded: wait for any end, then for it.
        wait_for(f"{name} to finish", finished, timeout=300)
        waited = kubectl(
            "wait",
            "--for=condition=Succeeded",
            f"pipelinerun/{name}",
            "-n",
            namespace,
            "--timeout=10s",
            check=False,
        )
        if waited.returncode != 0:
            status = get_json(kubectl, "pipelinerun", name, "-n", namespace).get("status")
            logs = kubectl(
                "logs", f"deployment/{prefix}-operator", "-n", namespace, "--tail=60", check=False
            )
            raise AssertionError(
                f"{name} did not succeed: {waited.stderr}\nstatus: {json.dumps(status)}\n"
                f"operator log:\n{logs.stdout}{logs.stderr}"
            )
        status = get_json(kubectl, "pipelinerun", name, "-n", namespace)["status"]
        assert status["phase"] == "Succeeded"
        assert status["runId"]
        # The stage Jobs ran in the run's namespace, as the project image (this checkout).
        jobs = get_json(kubectl, "jobs", "-n", namespace)["items"]
        assert len(jobs) >= 3
        images = {c["image"] for j in jobs for c in j["spec"]["template"]["spec"]["containers"]}
        assert images == {"lineage-hub:dev"}
        sink = app.data_volume() / "output" / namespace / "orders-daily.parquet"
        assert sink.is_file() and sink.stat().st_size > 0

        # The same run through the Helm-installed gateway, with the chart's token.
        token = gateway_token(kubectl, namespace, f"{prefix}-gateway")
        gateway = f"http://127.0.0.1:{gateway_port}"

        def gateway_view() -> dict[str, Any] | None:
            try:
                reply = httpx.get(
                    f"{gateway}/api/v1/pipeline/run/{name}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                )
            except httpx.HTTPError:
                return None
            found: dict[str, Any] | None = reply.json() if reply.status_code == 200 else None
            return found

        seen = wait_for("the gateway's view of the run", gateway_view, timeout=90)
        assert (seen["phase"], seen["runId"]) == ("Succeeded", status["runId"])

        # helm upgrade: the release changes in place.
        upgraded = helm(
            "upgrade",
            release,
            str(CHART),
            "--namespace",
            namespace,
            *sets(values),
            *extra_env,
            "--set",
            "operator.pollSeconds=7",
        )
        assert "REVISION: 2" in upgraded.stdout
        # The run's objects are the operator's to clean up (finalizer, stage Jobs): delete
        # the run while it still runs.
        kubectl("delete", "pipelinerun", name, "-n", namespace, "--timeout=120s", timeout=150)

        # helm uninstall: no object of the release left, the CRD kept.
        helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m")
        selector = f"app.kubernetes.io/instance={release}"

        def leftovers() -> str:
            namespaced = kubectl(
                "get",
                "deployments,replicasets,pods,services,serviceaccounts,secrets,configmaps,"
                "roles,rolebindings",
                "-n",
                namespace,
                "-o",
                "name",
            ).stdout.split()
            ours = [n for n in namespaced if n.split("/", 1)[1].startswith(release)]
            cluster = kubectl(
                "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
            ).stdout.split()
            return " ".join(ours + cluster)

        wait_for("the release's objects to be gone", lambda: leftovers() == "" or None, 90)
        kubectl("get", "crd", "pipelineruns.lineagehub.io")
        assert release not in helm("list", "--namespace", namespace, "--all").stdout
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", check=False)
        supervisor.up([stack_operator])
