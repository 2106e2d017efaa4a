"""The Helm chart, rendered by the real `helm` (built by the stack) for each switch.

No API server: `helm lint` and `helm template` only. What a cluster says about the
objects is in tests/integration/test_chart_install.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from lineagehub.api.crd import build_crd, build_operator_clusterrole, build_pipeline_crd
from lineagehub.api.generate import (
    CHART_CLUSTERROLE_PATH,
    CHART_CRD_PATH,
    CHART_PIPELINE_CRD_PATH,
    CRD_PATH,
    PIPELINE_CRD_PATH,
    render,
)
from lineagehub.api.pipelinerun import StageName
from lineagehub.topics import ALL_TOPICS, PARTITIONS
from stack.pieces.helm import Helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lineage-hub"
KIND_CONFIG = ROOT / "kind-config.yaml"

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> Path:
    piece = Helm()
    if not piece.ready():
        piece.build()  # cached: a no-op once the stack has built it
    return piece.binary


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120
    )


def template(helm: Path, *sets: str, values: Path | None = None) -> list[Manifest]:
    args = ["template", "hub", str(CHART), "--namespace", "lh"]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(
        f"no {kind}/{name} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )


def names(docs: list[Manifest], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == kind}


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


GATEWAY = "hub-lineage-hub-gateway"
GATEWAY_NODE_PORT = 30800
GATEWAY_RULES = [
    {
        "apiGroups": ["lineagehub.io"],
        "resources": ["pipelineruns"],
        "verbs": ["create", "get", "list", "patch"],  # patch: spec.cancel
    },
    # A run's Kubernetes Events on its console page (gateway/runs.py `events`).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]

EXTERNAL = (
    "kafka.enabled=false",
    "kafka.bootstrap=kafka.data.svc:9092",
    "marquez.enabled=false",
    "marquez.url=http://marquez.data.svc:5000",
    "clickhouse.enabled=false",
    "clickhouse.url=clickhouse://reader:s3cret@ch.data.svc:9000/otel",
    "jaeger.enabled=false",
    "jaeger.url=https://jaeger.example.com",
)


# --------------------------------------------------------------------------- lint


def test_helm_lint_strict(helm: Path) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout


def test_helm_lint_kind_values(helm: Path) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(CHART / "values-kind.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- defaults


def test_defaults_render_every_piece(helm: Path) -> None:
    docs = template(helm)
    assert names(docs, "Deployment") == {
        "hub-lineage-hub-operator",
        "hub-lineage-hub-consume-lineage",
        "hub-lineage-hub-consume-otel",
        "hub-lineage-hub-gateway",
        "hub-lineage-hub-marquez",
        "hub-lineage-hub-marquez-web",
        "hub-lineage-hub-jaeger",
        "hub-lineage-hub-grafana",
        "hub-lineage-hub-prometheus",
    }
    assert names(docs, "StatefulSet") == {
        "hub-lineage-hub-kafka",
        "hub-lineage-hub-postgresql",
        "hub-lineage-hub-clickhouse",
    }
    assert names(docs, "Job") == {"hub-lineage-hub-kafka-topics"}
    # crds/ is Helm's; the templated copy is off by default, NodePorts too.
    assert not names(docs, "CustomResourceDefinition")
    assert all(d["spec"].get("type") != "NodePort" for d in docs if d["kind"] == "Service")


def test_operator_deployment(helm: Path) -> None:
    docs = template(helm)
    deploy = find(docs, "Deployment", "hub-lineage-hub-operator")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hub-lineage-hub-operator"
    (container,) = pod["containers"]
    assert container["command"] == ["lineage-hub"]
    assert container["args"][0] == "operator"
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(container)
    assert env["KAFKA_BOOTSTRAP"] == "hub-lineage-hub-kafka.lh.svc:9092"
    assert env["MARQUEZ_URL"] == "http://hub-lineage-hub-marquez.lh.svc:5000"
    assert env["JAEGER_QUERY_URL"] == "http://hub-lineage-hub-jaeger.lh.svc:16686"
    assert "JAEGER_PUBLIC_URL" not in env  # the operator falls back to the query URL
    assert env["LINEAGEHUB_TRACE_STORE_URL"] == "http://hub-lineage-hub-consume-otel.lh.svc:8082"
    assert env["LINEAGEHUB_RUNNER_IMAGE"] == "ghcr.io/lineage-hub/lineage-hub:0.1.0"
    assert container["image"] == "ghcr.io/lineage-hub/lineage-hub:0.1.0"
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_active_run_limits_reach_the_operator(helm: Path) -> None:
    from lineagehub_operator.config import OperatorConfig

    def env(*overrides: str) -> dict[str, str]:
        deploy = find(template(helm, *overrides), "Deployment", "hub-lineage-hub-operator")
        found = env_of(deploy["spec"]["template"]["spec"]["containers"][0])
        return {k: v for k, v in found.items() if isinstance(v, str)}

    defaults = OperatorConfig.from_env(env())
    assert (defaults.max_active_runs, defaults.max_active_runs_per_namespace) == (0, 0)
    limited = OperatorConfig.from_env(
        env("operator.maxActiveRuns=10", "operator.maxActiveRunsPerNamespace=3")
    )
    assert (limited.max_active_runs, limited.max_active_runs_per_namespace) == (10, 3)


def test_operator_rbac_is_the_generated_clusterrole(helm: Path) -> None:
    docs = template(helm)
    role = find(docs, "ClusterRole", "hub-lineage-hub-operator")
    assert role["rules"] == build_operator_clusterrole()["rules"]
    binding = find(docs, "ClusterRoleBinding", "hub-lineage-hub-operator")
    assert binding["roleRef"]["name"] == "hub-lineage-hub-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub-lineage-hub-operator", "namespace": "lh"}
    ]
    assert find(docs, "ServiceAccount", "hub-lineage-hub-operator")


def test_operator_watching_namespaces_gets_roles_there_and_no_cluster_wide_rights(
    helm: Path,
) -> None:
    from lineagehub.api.crd import build_operator_discovery_clusterrole, build_operator_role

    docs = template(helm, "operator.watchNamespaces={a,b}")
    name = "hub-lineage-hub-operator"
    roles = {
        d["metadata"]["namespace"]: d
        for d in docs
        if d["kind"] == "Role" and d["metadata"]["name"] == name
    }
    assert set(roles) == {"a", "b"}
    assert all(r["rules"] == build_operator_role()["rules"] for r in roles.values())
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == name]
    assert {b["metadata"]["namespace"] for b in bindings} == {"a", "b"}
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": name,
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "lh"}]
    # Cluster-wide: only the read-only discovery kopf does; nothing on runs, Jobs or pods.
    cluster = find(docs, "ClusterRole", name)
    assert cluster["rules"] == build_operator_discovery_clusterrole()["rules"]
    assert {r for rule in cluster["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    # Read-only: get is a run's namespace, for its active-run limit.
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in cluster["rules"])


def test_run_policy_settings_reach_the_operator(helm: Path) -> None:
    from lineagehub_operator.config import OperatorConfig

    def operator_env(*sets: str) -> dict[str, Any]:
        docs = template(helm, *sets)
        pod = find(docs, "Deployment", "hub-lineage-hub-operator")["spec"]["template"]["spec"]
        return env_of(pod["containers"][0])

    env = operator_env()
    config = OperatorConfig.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    # By default the chart's own image is the only one a run may name, no private target
    # is reachable, and no prefix rule applies.
    assert config.runner_image == "ghcr.io/lineage-hub/lineage-hub:0.1.0"
    assert config.allowed_images == ()
    assert config.allowed_uri_prefixes == ()
    assert config.private_targets.to_text() == ""
    env = operator_env(
        "operator.policy.allowedImages={registry.example/runner:*}",
        "operator.policy.allowedUriPrefixes={https://data.example.com/exports/,s3://lake/}",
        "operator.policy.allowedPrivateTargets={10.1.0.0/16,minio.data.svc}",
    )
    config = OperatorConfig.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert config.allowed_images == ("registry.example/runner:*",)
    assert config.allowed_uri_prefixes == ("https://data.example.com/exports/", "s3://lake/")
    assert config.private_targets.to_text() == "10.1.0.0/16,minio.data.svc"


def _stage_egress(docs: list[Manifest]) -> dict[str, Manifest]:
    return {
        d["metadata"]["namespace"]: d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "hub-lineage-hub-stage-egress"
    }


def test_stage_pods_egress_is_public_dns_and_kafka_only(helm: Path) -> None:
    import ipaddress

    policies = _stage_egress(template(helm))
    assert set(policies) == {"lh"}
    spec = policies["lh"]["spec"]
    assert spec["policyTypes"] == ["Egress"]
    # It selects exactly the stage pods the operator labels.
    from lineagehub_operator.config import OperatorConfig
    from lineagehub_operator.decide import RunIds, decide
    from lineagehub_operator.manifests import stage_job

    from lineagehub.api.pipelinerun import PipelineRun

    run = PipelineRun.model_validate(
        {
            "metadata": {"name": "r", "namespace": "lh", "uid": "u"},
            "spec": {
                "source": {"uri": "file:///data/in.csv", "format": "csv"},
                "sink": {"uri": "file:///data/out.csv", "format": "csv"},
            },
        }
    )
    ids = RunIds("019ac0f0-0000-7000-8000-000000000001", "0" * 31 + "1", "0" * 15 + "1")
    run = run.model_copy(update={"status": decide(run, {}, datetime.now(UTC), ids).status})
    pod_labels = stage_job(run, StageName.EXTRACT, OperatorConfig())["spec"]["template"][
        "metadata"
    ]["labels"]
    selector = spec["podSelector"]
    assert selector["matchLabels"].items() <= pod_labels.items()
    assert all(e["key"] in pod_labels for e in selector["matchExpressions"])
    # Every ipBlock that opens the whole internet closes the private, loopback and
    # link-local ranges the run policy refuses.
    blocks = [p["ipBlock"] for rule in spec["egress"] for p in rule["to"] if "ipBlock" in p]
    closed = {ipaddress.ip_network(c) for block in blocks for c in block.get("except", [])}
    for address in (
        "169.254.169.254",
        "10.0.0.1",
        "127.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "100.64.0.1",
    ):
        ip = ipaddress.ip_address(address)
        assert any(ip in net for net in closed), address
        opened = [b for b in blocks if ip in ipaddress.ip_network(b["cidr"])]
        assert all(
            any(ip in ipaddress.ip_network(c) for c in b.get("except", [])) for b in opened
        ), address
    ports = {
        (p.get("protocol"), p["port"]) for rule in spec["egress"] for p in rule.get("ports", [])
    }
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 9092)}


def test_stage_egress_follows_watched_namespaces_and_allowed_targets(helm: Path) -> None:
    docs = template(
        helm,
        "operator.watchNamespaces={runs,more}",
        "operator.policy.allowedPrivateTargets={10.1.0.0/16,192.168.5.5,minio.data.svc}",
    )
    policies = _stage_egress(docs)
    assert set(policies) == {"runs", "more"}
    cidrs = [
        p["ipBlock"]["cidr"]
        for rule in policies["runs"]["spec"]["egress"]
        for p in rule["to"]
        if "ipBlock" in p and "except" not in p["ipBlock"]
    ]
    assert cidrs == ["10.1.0.0/16", "192.168.5.5/32"]
    wide = _stage_egress(template(helm, "operator.stageNetworkPolicy.namespaces={team-a}"))
    assert set(wide) == {"lh", "team-a"}
    assert not _stage_egress(template(helm, "operator.stageNetworkPolicy.enabled=false"))


def test_operator_watch_namespaces_and_paths(helm: Path) -> None:
    docs = template(
        helm,
        "operator.watchNamespaces={a,b}",
        "operator.data.hostPath=/data",
        "operator.workspace.storageClass=fast",
        "operator.runnerImage=registry.example/runner:1",
    )
    (container,) = find(docs, "Deployment", "hub-lineage-hub-operator")["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--namespace=a" in container["args"] and "--namespace=b" in container["args"]
    env = env_of(container)
    assert env["LINEAGEHUB_DATA_HOST_PATH"] == "/data"
    assert env["LINEAGEHUB_WORKSPACE_STORAGE_CLASS"] == "fast"
    assert env["LINEAGEHUB_RUNNER_IMAGE"] == "registry.example/runner:1"


def test_consumers(helm: Path) -> None:
    docs = template(helm)
    for kind, port in (("lineage", 8081), ("otel", 8082)):
        deploy = find(docs, "Deployment", f"hub-lineage-hub-consume-{kind}")
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        assert container["args"][:2] == ["consume", kind]
        assert f"--health-port={port}" in container["args"]
        assert "--health-host=0.0.0.0" in container["args"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert find(docs, "Service", f"hub-lineage-hub-consume-{kind}")["spec"]["ports"]
    otel = find(docs, "Deployment", "hub-lineage-hub-consume-otel")
    (container,) = otel["spec"]["template"]["spec"]["containers"]
    assert "--clickhouse-backend=native" in container["args"]
    env = env_of(container)
    assert env["CLICKHOUSE_URL"] == (
        "clickhouse://lineagehub:$(CLICKHOUSE_PASSWORD)@hub-lineage-hub-clickhouse.lh.svc:9000/otel"
    )
    # $(VAR) expansion needs the password defined before the URL.
    order = [e["name"] for e in container["env"]]
    assert order.index("CLICKHOUSE_PASSWORD") < order.index("CLICKHOUSE_URL")


# --------------------------------------------------------------------------- switches


def test_every_service_switched_off_and_pointed_elsewhere(helm: Path) -> None:
    docs = template(helm, *EXTERNAL, "grafana.enabled=false", "prometheus.enabled=false")
    assert names(docs, "StatefulSet") == set()
    assert names(docs, "Deployment") == {
        "hub-lineage-hub-operator",
        "hub-lineage-hub-consume-lineage",
        "hub-lineage-hub-consume-otel",
        "hub-lineage-hub-gateway",
    }
    operator = find(docs, "Deployment", "hub-lineage-hub-operator")
    env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_BOOTSTRAP"] == "kafka.data.svc:9092"
    assert env["MARQUEZ_URL"] == "http://marquez.data.svc:5000"
    assert env["JAEGER_QUERY_URL"] == "https://jaeger.example.com"
    otel = find(docs, "Deployment", "hub-lineage-hub-consume-otel")
    env = env_of(otel["spec"]["template"]["spec"]["containers"][0])
    assert env["CLICKHOUSE_URL"] == {
        "secretKeyRef": {"name": "hub-lineage-hub-clickhouse", "key": "url"}
    }
    secret = find(docs, "Secret", "hub-lineage-hub-clickhouse")
    assert set(secret["data"]) == {"url", "password"}
    lineage = find(docs, "Deployment", "hub-lineage-hub-consume-lineage")
    assert env_of(lineage["spec"]["template"]["spec"]["containers"][0])["MARQUEZ_URL"] == (
        "http://marquez.data.svc:5000"
    )
    # The topics Job still runs, against the given Kafka.
    job = find(docs, "Job", "hub-lineage-hub-kafka-topics")
    assert env_of(job["spec"]["template"]["spec"]["containers"][0])["KAFKA_BOOTSTRAP"] == (
        "kafka.data.svc:9092"
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("kafka.enabled=false",), "kafka.bootstrap"),
        (("marquez.enabled=false",), "marquez.url"),
        (("clickhouse.enabled=false",), "clickhouse.url"),
        (("postgresql.enabled=false",), "marquez.externalDatabase.host"),
    ],
)
def test_switched_off_without_an_address_fails_naming_it(
    helm: Path, sets: tuple[str, ...], message: str
) -> None:
    args = ["template", "hub", str(CHART)]
    for item in sets:
        args += ["--set", item]
    done = run_helm(helm, *args)
    assert done.returncode != 0
    assert message in done.stderr


@pytest.mark.parametrize(
    "piece", ["kafka", "postgresql", "marquez", "clickhouse", "jaeger", "grafana", "prometheus"]
)
def test_each_piece_switches_off_alone(helm: Path, piece: str) -> None:
    address = {
        "kafka": ("kafka.bootstrap=k:9092",),
        "marquez": ("marquez.url=http://m:5000",),
        "clickhouse": ("clickhouse.url=clickhouse://u:p@c:9000/otel",),
        "postgresql": ("marquez.externalDatabase.host=pg.example",),
    }.get(piece, ())
    docs = template(helm, f"{piece}.enabled=false", *address)
    workload_names = names(docs, "Deployment") | names(docs, "StatefulSet")
    assert f"hub-lineage-hub-{piece}" not in workload_names
    others = {"operator", "consume-lineage", "consume-otel", "gateway"}
    assert {f"hub-lineage-hub-{o}" for o in others} <= workload_names


def test_operator_and_consumers_switch_off(helm: Path) -> None:
    docs = template(
        helm,
        "operator.enabled=false",
        "consumers.lineage.enabled=false",
        "consumers.otel.enabled=false",
    )
    deployments = names(docs, "Deployment")
    assert not any("operator" in n or "consume" in n for n in deployments)
    assert not names(docs, "ClusterRole")
    assert "hub-lineage-hub-kafka" in names(docs, "StatefulSet")


def test_topics_job(helm: Path) -> None:
    docs = template(helm)
    job = find(docs, "Job", "hub-lineage-hub-kafka-topics")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert sorted(env["TOPICS"].split()) == sorted(ALL_TOPICS)
    assert env["PARTITIONS"] == str(PARTITIONS)
    assert not names(template(helm, "kafka.topics.create=false"), "Job")


@pytest.mark.parametrize(
    ("name", "build"),
    [("pipelineruns.lineagehub.io", build_crd), ("pipelines.lineagehub.io", build_pipeline_crd)],
)
def test_crds_create_templates_a_kept_copy_of_the_generated_crd(
    helm: Path, name: str, build: Callable[[], dict[str, Any]]
) -> None:
    docs = template(helm, "crds.create=true")
    assert len(names(docs, "CustomResourceDefinition")) == 2
    crd = find(docs, "CustomResourceDefinition", name)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    generated = build()
    assert crd["spec"] == generated["spec"]
    stripped = {k: v for k, v in crd["metadata"].items() if k not in {"annotations", "labels"}}
    assert stripped == {
        k: v for k, v in generated["metadata"].items() if k not in {"annotations", "labels"}
    }


def test_chart_copies_are_written_by_the_generator() -> None:
    """crds/, the chart's crds/ and files/ come from one `python -m lineagehub.api.generate`."""
    assert (ROOT / CHART_CRD_PATH).read_text() == render(build_crd())
    assert (ROOT / CHART_CRD_PATH).read_text() == (ROOT / CRD_PATH).read_text()
    assert (ROOT / CHART_PIPELINE_CRD_PATH).read_text() == render(build_pipeline_crd())
    assert (ROOT / CHART_PIPELINE_CRD_PATH).read_text() == (ROOT / PIPELINE_CRD_PATH).read_text()
    assert (ROOT / CHART_CLUSTERROLE_PATH).read_text() == render(build_operator_clusterrole())


def test_node_ports_match_kind_config(helm: Path) -> None:
    docs = template(helm, "nodePorts.enabled=true")
    node_ports = {
        p["nodePort"]
        for d in docs
        if d["kind"] == "Service" and d["spec"].get("type") == "NodePort"
        for p in d["spec"]["ports"]
    }
    kind = yaml.safe_load(KIND_CONFIG.read_text())
    mapped = {m["containerPort"] for m in kind["nodes"][0]["extraPortMappings"]}
    assert node_ports == {30500, 30300, 30686, 30030, GATEWAY_NODE_PORT}
    # Every node port, the gateway's included, reaches the host and no other is mapped.
    assert mapped == node_ports
    mounts = {m["containerPath"] for m in kind["nodes"][0]["extraMounts"]}
    assert "/data/examples" in mounts


def test_kind_values(helm: Path) -> None:
    docs = template(helm, values=CHART / "values-kind.yaml")
    operator = find(docs, "Deployment", "hub-lineage-hub-operator")
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "lineage-hub:dev"
    assert container["imagePullPolicy"] == "Never"
    env = env_of(container)
    assert env["LINEAGEHUB_DATA_HOST_PATH"] == "/data"
    assert env["LINEAGEHUB_RUNNER_IMAGE"] == "lineage-hub:dev"
    assert any(d["spec"].get("type") == "NodePort" for d in docs if d["kind"] == "Service")


@pytest.mark.parametrize("piece", ["kafka", "postgresql", "clickhouse"])
def test_persistence_switch(helm: Path, piece: str) -> None:
    name = f"hub-lineage-hub-{piece}"
    plain = find(template(helm), "StatefulSet", name)
    assert "volumeClaimTemplates" not in plain["spec"]
    volumes = {v["name"]: v for v in plain["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    kept = find(
        template(
            helm,
            f"{piece}.persistence.enabled=true",
            f"{piece}.persistence.storageClass=fast",
        ),
        "StatefulSet",
        name,
    )
    (claim,) = kept["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["storageClassName"] == "fast"
    assert "data" not in {v["name"] for v in kept["spec"]["template"]["spec"]["volumes"]}


# --------------------------------------------------------------------------- gateway


def of_component(docs: list[Manifest], component: str) -> list[tuple[str, str]]:
    return [
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]


def gateway_container(docs: list[Manifest]) -> dict[str, Any]:
    pod = find(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def test_gateway_deployment_and_service(helm: Path) -> None:
    docs = template(helm)
    deploy = find(docs, "Deployment", GATEWAY)
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == GATEWAY
    container = gateway_container(docs)
    assert container["image"] == "ghcr.io/lineage-hub/lineage-hub:0.1.0"
    assert container["command"] == ["lineage-hub"]
    assert container["args"][:3] == ["gateway", "--host=0.0.0.0", "--port=8000"]
    # The flags are the gateway's own: its parser takes them.
    from gateway.cli import parser

    parsed = parser().parse_args(container["args"][1:])
    assert (parsed.host, parsed.port) == ("0.0.0.0", 8000)
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": 8000}
    # Probes on an endpoint that answers while Kafka or the API server is away
    # (/api/v1/health is 503 then: restarting or unlisting the pod would not help).
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "http"}, probe
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = env_of(container)
    assert env["KAFKA_BOOTSTRAP"] == "hub-lineage-hub-kafka.lh.svc:9092"
    assert env["MARQUEZ_URL"] == "http://hub-lineage-hub-marquez.lh.svc:5000"
    assert env["CLICKHOUSE_URL"] == (
        "clickhouse://lineagehub:$(CLICKHOUSE_PASSWORD)@hub-lineage-hub-clickhouse.lh.svc:9000/otel"
    )
    order = [e["name"] for e in container["env"]]
    assert order.index("CLICKHOUSE_PASSWORD") < order.index("CLICKHOUSE_URL")
    assert env["LINEAGEHUB_GATEWAY_NAMESPACE"] == "lh"
    assert env["LINEAGEHUB_GATEWAY_REQUIRED"] == "kafka,kubernetes"
    assert "LINEAGEHUB_GATEWAY_AUTH" not in env and "LINEAGEHUB_GATEWAY_TOKENS" not in env
    # What the gateway reads from that environment (secrets aside).
    from gateway.config import from_env

    plain = {k: v for k, v in env.items() if isinstance(v, str) and "TOKENS" not in k}
    settings = from_env(plain)
    assert settings.kafka_bootstrap == "hub-lineage-hub-kafka.lh.svc:9092"
    assert settings.namespace == "lh"
    assert settings.required == frozenset({"kafka", "kubernetes"})
    assert settings.rate_per_s == 100.0 and settings.rate_burst == 200

    service = find(docs, "Service", GATEWAY)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http"}]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deploy["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_gateway_pod_is_restricted(helm: Path) -> None:
    pod = find(template(helm), "Deployment", GATEWAY)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # Writable: /tmp only; the tokens come read-only from the Secret.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/var/run/secrets/lineagehub-gateway"}
    assert mounts["/var/run/secrets/lineagehub-gateway"]["readOnly"] is True
    assert all("hostPath" not in v for v in pod["volumes"])


def test_gateway_switch(helm: Path) -> None:
    assert len(of_component(template(helm), "gateway")) == 6  # SA Role RB Secret Deploy Svc
    off = template(helm, "gateway.enabled=false", "nodePorts.enabled=true")
    assert of_component(off, "gateway") == []
    assert GATEWAY not in names(off, "Deployment")
    # The rest of the release does not depend on it.
    assert {"hub-lineage-hub-operator", "hub-lineage-hub-consume-otel"} <= names(off, "Deployment")


def test_gateway_rbac_is_minimal_and_namespaced(helm: Path) -> None:
    docs = template(helm)
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == GATEWAY]
    assert role["metadata"]["namespace"] == "lh"
    # create / get / list PipelineRuns and list Events, nothing else: the list of runs
    # is also its Kubernetes health check (gateway/runs.py `ping`).
    assert role["rules"] == GATEWAY_RULES
    binding = find(docs, "RoleBinding", GATEWAY)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": GATEWAY,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": GATEWAY, "namespace": "lh"}]
    assert GATEWAY not in names(docs, "ClusterRole") | names(docs, "ClusterRoleBinding")
    sa = find(docs, "ServiceAccount", GATEWAY)
    assert sa["automountServiceAccountToken"] is True


def test_gateway_rbac_other_namespaces_and_cluster_wide(helm: Path) -> None:
    docs = template(helm, "gateway.runsNamespace=runs", "gateway.rbac.namespaces={extra,runs}")
    roles = {
        d["metadata"]["namespace"]: d
        for d in docs
        if d["kind"] == "Role" and "gateway" in d["metadata"]["name"]
    }
    assert set(roles) == {"runs", "extra"}
    assert all(r["rules"] == GATEWAY_RULES for r in roles.values())
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == GATEWAY]
    assert {b["metadata"]["namespace"] for b in bindings} == {"runs", "extra"}
    assert all(b["subjects"][0]["namespace"] == "lh" for b in bindings)
    assert env_of(gateway_container(docs))["LINEAGEHUB_GATEWAY_NAMESPACE"] == "runs"

    wide = template(helm, "gateway.rbac.clusterWide=true")
    assert not [
        d
        for d in wide
        if d["kind"] in {"Role", "RoleBinding"} and "gateway" in d["metadata"]["name"]
    ]
    assert find(wide, "ClusterRole", GATEWAY)["rules"] == GATEWAY_RULES
    binding = find(wide, "ClusterRoleBinding", GATEWAY)
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": GATEWAY, "namespace": "lh"}]

    none = template(
        helm,
        "gateway.rbac.create=false",
        "gateway.serviceAccount.create=false",
        "gateway.serviceAccount.name=mine",
    )
    kinds = {k for k, _ in of_component(none, "gateway")}
    assert kinds == {"Secret", "Deployment", "Service"}
    assert (
        find(none, "Deployment", GATEWAY)["spec"]["template"]["spec"]["serviceAccountName"]
        == "mine"
    )


def test_gateway_generated_token(helm: Path) -> None:
    import base64

    from gateway.auth import ALL_SCOPES
    from gateway.config import load_tokens

    docs = template(helm)
    secret = find(docs, "Secret", GATEWAY)
    text = base64.b64decode(secret["data"]["tokens"]).decode()
    token, _, scopes = text.partition(":")
    assert len(token) >= 32 and token.isalnum()
    store = load_tokens({"LINEAGEHUB_GATEWAY_TOKENS": text})
    assert len(store) == 1
    principal = store.authenticate(f"Bearer {token}")
    assert principal is not None and principal.scopes == ALL_SCOPES
    assert set(scopes.split(",")) == {s.value for s in ALL_SCOPES}
    container = gateway_container(docs)
    assert env_of(container)["LINEAGEHUB_GATEWAY_TOKENS_FILE"] == (
        "/var/run/secrets/lineagehub-gateway/tokens"
    )
    volumes = {
        v["name"]: v
        for v in find(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["tokens"]["secret"] == {
        "secretName": GATEWAY,
        "items": [{"key": "tokens", "path": "tokens"}],
    }
    # A second render (no cluster to look the Secret up in) makes a new one: on a
    # cluster `lookup` keeps the first; see tests/integration/test_chart_install.py.
    again = base64.b64decode(find(template(helm), "Secret", GATEWAY)["data"]["tokens"]).decode()
    assert again != text


def test_gateway_existing_secret_and_no_auth(helm: Path) -> None:
    docs = template(
        helm, "gateway.auth.existingSecret=my-tokens", "gateway.auth.existingSecretKey=list"
    )
    assert ("Secret", GATEWAY) not in of_component(docs, "gateway")
    container = gateway_container(docs)
    assert env_of(container)["LINEAGEHUB_GATEWAY_TOKENS_FILE"] == (
        "/var/run/secrets/lineagehub-gateway/list"
    )
    pod = find(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == "my-tokens"

    open_docs = template(helm, "gateway.auth.enabled=false")
    assert ("Secret", GATEWAY) not in of_component(open_docs, "gateway")
    container = gateway_container(open_docs)
    env = env_of(container)
    assert env["LINEAGEHUB_GATEWAY_AUTH"] == "none"
    assert "LINEAGEHUB_GATEWAY_TOKENS_FILE" not in env
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


def test_gateway_with_external_services(helm: Path) -> None:
    docs = template(helm, *EXTERNAL, "grafana.enabled=false", "consumers.otel.enabled=false")
    env = env_of(gateway_container(docs))
    assert env["KAFKA_BOOTSTRAP"] == "kafka.data.svc:9092"
    assert env["MARQUEZ_URL"] == "http://marquez.data.svc:5000"
    assert env["CLICKHOUSE_URL"] == {
        "secretKeyRef": {"name": "hub-lineage-hub-clickhouse", "key": "url"}
    }
    # The Secret with the URL exists for the gateway alone.
    assert set(find(docs, "Secret", "hub-lineage-hub-clickhouse")["data"]) == {"url", "password"}
    # Without a ClickHouse or a Marquez at all, the gateway leaves them out (metrics 503).
    bare = template(
        helm,
        "operator.enabled=false",
        "consumers.lineage.enabled=false",
        "consumers.otel.enabled=false",
        "grafana.enabled=false",
        "marquez.enabled=false",
        "clickhouse.enabled=false",
        "kafka.enabled=false",
        "kafka.bootstrap=k:9092",
    )
    env = env_of(gateway_container(bare))
    assert "CLICKHOUSE_URL" not in env and "MARQUEZ_URL" not in env
    assert "hub-lineage-hub-clickhouse" not in names(bare, "Secret")


def test_gateway_node_port(helm: Path) -> None:
    docs = template(helm, "nodePorts.enabled=true", "gateway.port=8088")
    service = find(docs, "Service", f"{GATEWAY}-nodeport")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8088, "targetPort": 8088, "nodePort": GATEWAY_NODE_PORT}
    ]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
    assert find(docs, "Service", GATEWAY)["spec"]["type"] == "ClusterIP"
    assert f"{GATEWAY}-nodeport" not in names(template(helm), "Service")


def notes(helm: Path, tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it. `helm template` leaves it out and an install
    dry run needs a cluster, so a copy of the chart renders it through `tpl`."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    (copy / "notes.tmpl").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (copy / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ tpl (.Files.Get "notes.tmpl") . | toJson }}\n'
    )
    args = ["template", "hub", str(copy), "-n", "lh", "--show-only", "templates/notes.yaml"]
    for item in sets:
        args += ["--set", item]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stderr
    text: str = yaml.safe_load(done.stdout)["data"]["notes"]
    return text


def test_gateway_notes(helm: Path, tmp_path: Path) -> None:
    text = notes(helm, tmp_path)
    assert "kubectl -n lh port-forward svc/hub-lineage-hub-gateway 8000:8000" in text
    assert "get secret hub-lineage-hub-gateway -o jsonpath='{.data.tokens}'" in text
    assert "node port 30800" in notes(helm, tmp_path / "np", "nodePorts.enabled=true")
    assert "Authentication is off" in notes(helm, tmp_path / "open", "gateway.auth.enabled=false")
    assert "gateway" not in notes(helm, tmp_path / "off", "gateway.enabled=false")


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ("operator.healthPort=abc", "/operator/healthPort"),
        ("kafka.enabled=maybe", "/kafka/enabled"),
        ("operator.watchNamespaces=ns", "/operator/watchNamespaces"),
        ("consumers.otel.batchRows=many", "/consumers/otel/batchRows"),
        ("grafana.image.tag=null", "/grafana/image"),
        ("nodePorts.grafana=80", "/nodePorts/grafana"),
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("gateway.port=http", "/gateway/port"),
        ("gateway.enabled=sometimes", "/gateway/enabled"),
        ("gateway.rbac.clusterWide=maybe", "/gateway/rbac/clusterWide"),
        ("gateway.required={kafka,redis}", "/gateway/required"),
        ("nodePorts.gateway=8000", "/nodePorts/gateway"),
    ],
)
def test_schema_names_the_wrong_field(helm: Path, item: str, field: str) -> None:
    done = run_helm(helm, "template", "hub", str(CHART), "--set", item)
    assert done.returncode != 0
    assert field in done.stderr, done.stderr


def test_schema_rejects_unknown_top_level_keys(helm: Path) -> None:
    done = run_helm(helm, "template", "hub", str(CHART), "--set", "kafak.enabled=false")
    assert done.returncode != 0
    assert "kafak" in done.stderr


def test_schema_is_valid_json_schema() -> None:
    from jsonschema import Draft7Validator

    schema = json.loads((CHART / "values.schema.json").read_text())
    Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    Draft7Validator(schema).validate(values)
    Draft7Validator(schema).validate(
        {**values, **yaml.safe_load((CHART / "values-kind.yaml").read_text())}
    )


# --------------------------------------------------------------------------- pod security


def test_pods_are_restricted(helm: Path) -> None:
    """Pod Security "restricted" for every pod; read-only root filesystems too."""
    docs = template(helm, "nodePorts.enabled=true")
    seen = 0
    for where, pod in pod_specs(docs):
        seen += 1
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True, where
        assert ctx["runAsUser"] != 0, where
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, where
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
        for container in pod.get("initContainers", []) + pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where
            assert ":" in container["image"] and not container["image"].endswith(":latest")
    assert seen == 13


def test_upstream_images_are_official_and_pinned(helm: Path) -> None:
    docs = template(helm)
    images = {
        c["image"]
        for _, pod in pod_specs(docs)
        for c in pod.get("initContainers", []) + pod["containers"]
    }
    repositories = {image.rsplit(":", 1)[0] for image in images}
    assert repositories == {
        "ghcr.io/lineage-hub/lineage-hub",
        "apache/kafka",
        "postgres",
        "marquezproject/marquez",
        "marquezproject/marquez-web",
        "clickhouse/clickhouse-server",
        "jaegertracing/jaeger",
        "grafana/grafana",
        "prom/prometheus",
    }
    for image in images:
        tag = image.rsplit(":", 1)[1]
        assert tag.removeprefix("v")[0].isdigit(), image


# --------------------------------------------------------------------------- config files


def link_urls(dashboard: dict[str, Any]) -> dict[str, str]:
    """The dashboard's hidden constants holding the base URLs of its links."""
    return {
        v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "constant"
    }


def without_link_urls(dashboard: dict[str, Any]) -> dict[str, Any]:
    variables = [v for v in dashboard["templating"]["list"] if v["type"] != "constant"]
    return {**dashboard, "templating": {**dashboard["templating"], "list": variables}}


def dashboard_links(helm: Path, *sets: str) -> dict[str, str]:
    docs = template(helm, *sets)
    dashboards = find(docs, "ConfigMap", "hub-lineage-hub-grafana-dashboards")
    return link_urls(json.loads(dashboards["data"]["run-detail.json"]))


def test_dashboard_links_follow_the_public_urls(helm: Path) -> None:
    kind = template(helm, values=CHART / "values-kind.yaml")
    text = find(kind, "ConfigMap", "hub-lineage-hub-grafana-dashboards")["data"]["run-detail.json"]
    assert link_urls(json.loads(text)) == {
        "marquez_url": "http://localhost:5000",
        "jaeger_url": "http://localhost:16686",
    }
    assert dashboard_links(
        helm,
        "grafana.links.marquezUrl=https://m.example/",
        "grafana.links.jaegerUrl=https://j.example",
    ) == {"marquez_url": "https://m.example", "jaeger_url": "https://j.example"}
    assert dashboard_links(helm, *EXTERNAL) == {
        "marquez_url": "http://marquez.data.svc:5000",
        "jaeger_url": "https://jaeger.example.com",
    }


def test_grafana_provisions_the_clickhouse_datasource_and_dashboards(helm: Path) -> None:
    docs = template(helm)
    provisioning = find(docs, "ConfigMap", "hub-lineage-hub-grafana-provisioning")
    datasources = yaml.safe_load(provisioning["data"]["datasources.yaml"])
    (source,) = [d for d in datasources["datasources"] if d["name"] == "ClickHouse"]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert source["uid"] == "lineagehub-clickhouse"
    assert source["jsonData"]["host"] == "hub-lineage-hub-clickhouse.lh.svc"
    assert source["jsonData"]["port"] == 9000
    assert source["jsonData"]["protocol"] == "native"
    dashboards = find(docs, "ConfigMap", "hub-lineage-hub-grafana-dashboards")
    assert set(dashboards["data"]) == {p.name for p in (ROOT / "dashboards").glob("*.json")}
    assert "run-detail.json" in dashboards["data"]
    links = {
        "marquez_url": "http://hub-lineage-hub-marquez.lh.svc:5000",
        "jaeger_url": "http://hub-lineage-hub-jaeger.lh.svc:16686",
    }
    for name, text in dashboards["data"].items():
        assert without_link_urls(json.loads(text)) == without_link_urls(
            json.loads((ROOT / "dashboards" / name).read_text())
        )
        assert link_urls(json.loads(text)).items() <= links.items(), name
    assert link_urls(json.loads(dashboards["data"]["run-detail.json"])) == links
    external = template(helm, *EXTERNAL)
    provisioning = find(external, "ConfigMap", "hub-lineage-hub-grafana-provisioning")
    sources = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"]
    (source,) = [d for d in sources if d["name"] == "ClickHouse"]
    assert source["jsonData"]["host"] == "ch.data.svc"
    assert source["jsonData"]["username"] == "reader"


def test_jaeger_reads_the_spans_topic(helm: Path) -> None:
    docs = template(helm)
    config = yaml.safe_load(
        find(docs, "ConfigMap", "hub-lineage-hub-jaeger")["data"]["config.yaml"]
    )
    kafka = config["receivers"]["kafka"]
    assert kafka["brokers"] == ["hub-lineage-hub-kafka.lh.svc:9092"]
    assert kafka["traces"] == {"topic": "otel-spans", "encoding": "otlp_proto"}
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp", "kafka"]


def test_kafka_is_single_node_kraft(helm: Path) -> None:
    docs = template(helm)
    props = find(docs, "ConfigMap", "hub-lineage-hub-kafka")["data"]["server.properties"]
    settings = dict(
        line.split("=", 1) for line in props.splitlines() if line and not line.startswith("#")
    )
    assert settings["process.roles"] == "broker,controller"
    assert settings["advertised.listeners"] == "PLAINTEXT://hub-lineage-hub-kafka.lh.svc:9092"
    assert settings["num.partitions"] == str(PARTITIONS)


# --------------------------------------------------------------------------- prometheus


def _meta_name(label: str) -> str:
    """A pod label as Prometheus's Kubernetes discovery names it."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def scrape_targets(docs: list[Manifest]) -> dict[str, list[tuple[str, int]]]:
    """What the bundled Prometheus would scrape of the rendered pods, per job: its pod
    discovery (a target per container port, with the pod's labels and the port's name)
    through each job's `keep` rules, as Prometheus applies them (values joined by `;`,
    the regex anchored at both ends)."""
    config = yaml.safe_load(
        find(docs, "ConfigMap", "hub-lineage-hub-prometheus")["data"]["prometheus.yml"]
    )
    targets: dict[str, list[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        (discovery,) = job["kubernetes_sd_configs"]
        assert discovery == {"role": "pod", "namespaces": {"names": ["lh"]}}
        keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        found = []
        for doc in docs:
            if doc["kind"] not in {"Deployment", "StatefulSet"}:
                continue
            labels = doc["spec"]["template"]["metadata"]["labels"]
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                for port in container.get("ports", []):
                    meta = {_meta_name(k): str(v) for k, v in labels.items()}
                    meta["__meta_kubernetes_pod_container_port_name"] = port.get("name", "")
                    if all(
                        re.fullmatch(
                            rule["regex"], ";".join(meta.get(n, "") for n in rule["source_labels"])
                        )
                        for rule in keeps
                    ):
                        found.append((labels["app.kubernetes.io/component"], port["containerPort"]))
        targets[job["job_name"]] = sorted(found)
    return targets


def test_prometheus_scrapes_each_services_metrics_port_once(helm: Path) -> None:
    docs = template(helm)
    operator = find(docs, "Deployment", "hub-lineage-hub-operator")
    (args,) = [c["args"] for c in operator["spec"]["template"]["spec"]["containers"]]
    metrics_port = int(next(a for a in args if a.startswith("--metrics-port=")).split("=")[1])
    gateway = find(docs, "Deployment", "hub-lineage-hub-gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    gateway_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    consumers = {
        kind: find(docs, "Service", f"hub-lineage-hub-consume-{kind}")["spec"]["ports"][0]["port"]
        for kind in ("lineage", "otel")
    }
    assert scrape_targets(docs) == {
        "gateway": [("gateway", gateway_port)],
        "consumers": [
            ("consume-lineage", consumers["lineage"]),
            ("consume-otel", consumers["otel"]),
        ],
        "operator": [("operator", metrics_port)],
    }
    # Reads pods in its own namespace, nothing else.
    role = find(docs, "Role", "hub-lineage-hub-prometheus")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = find(docs, "RoleBinding", "hub-lineage-hub-prometheus")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub-lineage-hub-prometheus", "namespace": "lh"}
    ]
    deployment = find(docs, "Deployment", "hub-lineage-hub-prometheus")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hub-lineage-hub-prometheus"
    assert "hub-lineage-hub-prometheus" not in names(docs, "ClusterRole")


def prometheus_datasources(helm: Path, *sets: str) -> list[dict[str, Any]]:
    docs = template(helm, *sets)
    provisioning = find(docs, "ConfigMap", "hub-lineage-hub-grafana-provisioning")
    sources = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"]
    return [s for s in sources if s["type"] == "prometheus"]


def test_grafanas_prometheus_datasource_is_the_bundled_one_or_the_given_url(helm: Path) -> None:
    (bundled,) = prometheus_datasources(helm)
    assert bundled["uid"] == "lineagehub-prometheus"  # what the dashboard's panels name
    service = find(template(helm), "Service", "hub-lineage-hub-prometheus")
    assert (
        bundled["url"]
        == f"http://hub-lineage-hub-prometheus.lh.svc:{service['spec']['ports'][0]['port']}"
    )
    (given,) = prometheus_datasources(
        helm, "prometheus.enabled=false", "grafana.prometheusUrl=http://prom.mon.svc:9090"
    )
    assert given["url"] == "http://prom.mon.svc:9090"
    assert prometheus_datasources(helm, "prometheus.enabled=false") == []
