"""lineage-hub itself on the local stack: the operator and the two consumers.

They run from this checkout's virtualenv as the chart would run them in a
cluster. The operator authenticates as its own user, bound to the generated
least-privilege ClusterRole, so the local stack exercises our RBAC for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from stack import paths, ports
from stack.piece import Launch, Piece, http_ok
from stack.pieces import controlplane as cp

REPO = paths.REPO_ROOT
VENV_BIN = Path(sys.executable).parent
OPERATOR_USER = "lineage-hub-operator"


def _local_url(port_name: str) -> str:
    return f"http://127.0.0.1:{ports.port(port_name)}"


def data_volume() -> Path:
    """The folder stage pods see at /data: the example data and the run outputs."""
    return paths.state_dir() / "data-volume"


def workspaces() -> Path:
    return paths.state_dir() / "workspaces"


def _kubectl(*args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [str(cp.kcp_dir() / "kubectl"), f"--kubeconfig={cp.admin_kubeconfig()}", *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def _endpoint_env() -> dict[str, str]:
    """Endpoints of the data-plane pieces that are up (the operator runs without them).

    Those that are down are set empty, so that an endpoint in the caller's own
    environment (a test session's, say) does not leak into the operator's.
    """
    from stack.pieces import DATA_PLANE, LINEAGE_STORE
    from stack.supervisor import running

    env: dict[str, str] = {}
    for piece in (*DATA_PLANE, *LINEAGE_STORE):
        if piece.name in {"kafka", "marquez", "jaeger"}:
            up = running(piece) is not None
            env.update({k: (v if up else "") for k, v in piece.env().items() if k != "PATH"})
    return env


class Operator(Piece):
    name = "operator"
    version = "dev"
    port_names = ("operator", "operator-metrics")

    def prepare(self) -> None:
        _kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "crds" / "lineagehub.io_pipelineruns.yaml"),
            "-f",
            str(REPO / "crds" / "lineagehub.io_pipelines.yaml"),
        )
        _kubectl(
            "wait",
            "--for=condition=Established",
            "crd/pipelineruns.lineagehub.io",
            "crd/pipelines.lineagehub.io",
            "--timeout=60s",
        )
        _kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "crds" / "rbac" / "operator-clusterrole.yaml"),
        )
        rbac = "rbac.authorization.k8s.io"
        binding = {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": OPERATOR_USER},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "lineage-hub-operator"},
            "subjects": [{"apiGroup": rbac, "kind": "User", "name": OPERATOR_USER}],
        }
        _kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(binding))
        data = data_volume()
        (data / "output").mkdir(parents=True, exist_ok=True)
        examples = data / "examples"
        if not examples.exists():
            examples.symlink_to(REPO / "examples" / "data")
        workspaces().mkdir(parents=True, exist_ok=True)

    def command(self) -> Launch:
        env = {
            "KUBECONFIG": str(cp.pki_dir() / "operator.kubeconfig"),
            "LINEAGEHUB_DATA_HOST_PATH": str(data_volume()),
            "LINEAGEHUB_WORKSPACE_HOST_PATH": str(workspaces()),
            "LINEAGEHUB_POLL_SECONDS": "10",
            "LINEAGEHUB_TRACE_STORE_URL": _local_url("consume-otel"),
            "LINEAGEHUB_LINEAGE_STORE_URL": _local_url("consume-otel"),
            "LINEAGEHUB_VERIFY_TIMEOUT_SECONDS": "120",
            # The run policy, said explicitly for what the local stack needs: stage pods
            # read /data (LINEAGEHUB_DATA_HOST_PATH above) and tests serve sources on
            # 127.0.0.1; every other loopback or private target stays refused.
            "LINEAGEHUB_RUNNER_IMAGE": "lineage-hub:dev",
            "LINEAGEHUB_ALLOWED_PRIVATE_TARGETS": "127.0.0.1/32,::1/128",
            **_endpoint_env(),
        }
        return Launch(
            [
                str(VENV_BIN / "lineage-hub"),
                "operator",
                f"--liveness={_local_url('operator')}/healthz",
                f"--metrics-port={self.ports[1]}",  # Prometheus /metrics (reconcile, queue)
            ],
            env=env,
            cwd=REPO,
        )

    def ready(self) -> bool:
        return http_ok(f"{_local_url('operator')}/healthz")


class _Consumer(Piece):
    """`lineage-hub consume KIND` with its health endpoint on the stack's port for it."""

    kind = ""

    def command(self) -> Launch:
        from stack.pieces import DATA_PLANE, LINEAGE_STORE

        env: dict[str, str] = {}
        for piece in (*DATA_PLANE, *LINEAGE_STORE):
            env.update(piece.env())
        return Launch(
            [
                str(VENV_BIN / "lineage-hub"),
                "consume",
                self.kind,
                f"--group=lineage-hub-{self.kind}",
                f"--health-port={self.ports[0]}",
                *self.extra_args(env),
            ],
            env=env,
            cwd=REPO,
        )

    def extra_args(self, env: dict[str, str]) -> list[str]:
        return []

    def ready(self) -> bool:
        """Up and answering; `degraded` (e.g. Marquez away) still counts as running."""
        try:
            code = httpx.get(f"http://127.0.0.1:{self.ports[0]}/healthz", timeout=2).status_code
        except httpx.HTTPError:
            return False
        return code in {200, 503}


class LineageConsumer(_Consumer):
    name = "consume-lineage"
    version = "dev"
    kind = "lineage"
    port_names = ("consume-lineage",)


class OtelConsumer(_Consumer):
    name = "consume-otel"
    version = "dev"
    kind = "otel"
    port_names = ("consume-otel",)

    def extra_args(self, env: dict[str, str]) -> list[str]:
        # It also writes the lineage warehouse (its own consumer group on
        # openlineage-events): chdb admits one process per folder, so the one owner
        # writes traces and lineage and answers reads for everyone else.
        return ["--clickhouse-backend=chdb", f"--chdb-path={env['CLICKHOUSE_CHDB_PATH']}"]

    def env(self) -> dict[str, str]:
        """How readers reach what this piece owns: ClickHouse's HTTP protocol (the
        gateway) and the trace and lineage lookups (the operator)."""
        url = _local_url("consume-otel")
        return {
            "CLICKHOUSE_HTTP_URL": f"{url}/",
            "LINEAGEHUB_TRACE_STORE_URL": url,
            "LINEAGEHUB_LINEAGE_STORE_URL": url,
        }


def gateway_token() -> str:
    """The local gateway's write token (all scopes), made once per stack state."""
    path = paths.state_dir() / "gateway" / "token"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


class Gateway(Piece):
    """`lineage-hub gateway`: the HTTP API and the console, reading the stack's stores.

    Reads need no token on this loopback stack (`LINEAGEHUB_GATEWAY_PUBLIC_READ`), as a
    console opened in a browser has none; writes need the token `stack env` exports."""

    name = "gateway"
    version = "dev"
    port_names = ("gateway",)

    def command(self) -> Launch:
        from stack.pieces import DATA_PLANE

        token_file = paths.state_dir() / "gateway" / "tokens"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(
            f"{gateway_token()}:lineage:write,lineage:read,runs:write,runs:read\n"
        )
        token_file.chmod(0o600)
        env = {k: v for piece in DATA_PLANE for k, v in piece.env().items() if k != "PATH"}
        env |= {
            **_endpoint_env(),
            **OtelConsumer().env(),
            "KUBECONFIG": str(cp.admin_kubeconfig()),
            "LINEAGEHUB_GATEWAY_TOKENS_FILE": str(token_file),
            "LINEAGEHUB_GATEWAY_PUBLIC_READ": "1",
            "LINEAGEHUB_GATEWAY_REQUIRED": "kafka,kubernetes,clickhouse",
            # A caller's sampled trace is always continued; of the rest (the console's
            # own polling, mostly) one request in ten is traced, not every poll.
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        }
        return Launch(
            [str(VENV_BIN / "lineage-hub"), "gateway", f"--port={self.ports[0]}"], env=env, cwd=REPO
        )

    def ready(self) -> bool:
        return http_ok(f"{_local_url('gateway')}/api/v1/console/config")

    def env(self) -> dict[str, str]:
        return {
            "LINEAGEHUB_GATEWAY_URL": _local_url("gateway"),
            "LINEAGEHUB_GATEWAY_TOKEN_FILE": str(paths.state_dir() / "gateway" / "token"),
        }


APP: tuple[Piece, ...] = (Operator(), LineageConsumer(), OtelConsumer(), Gateway())
