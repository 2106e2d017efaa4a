"""Operator settings, from the environment (the chart sets them on the Deployment).

The run policy (`policy.py`) reads four of them:

- `LINEAGEHUB_RUNNER_IMAGE` and `LINEAGEHUB_ALLOWED_IMAGES`: the images `spec.image` may
  name (comma-separated, exact or a prefix ending in `*`); the runner image only when
  unset.
- `LINEAGEHUB_ALLOWED_URI_PREFIXES`: prefixes every source and sink URI must start with
  (comma-separated; any URI the other rules allow when unset).
- `LINEAGEHUB_ALLOWED_PRIVATE_TARGETS`: loopback, private or link-local targets that
  http(s) sources, s3 endpoints and clickhouse sinks may reach anyway (CIDRs or host
  names, comma-separated; none when unset). Also handed to every stage Job.
- `file://` URIs may name only the data mount (`LINEAGEHUB_DATA_MOUNT_PATH`, when a data
  volume is configured) and the run's workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lineagehub.api.egress import ALLOWED_PRIVATE_TARGETS_ENV, TargetPolicy


def _list(text: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


@dataclass(frozen=True)
class OperatorConfig:
    runner_image: str = "lineage-hub:dev"
    kafka_bootstrap: str | None = None
    openlineage_namespace: str = "lineage-hub"
    workspace_host_path: str | None = None  # local stack: a host folder per run
    workspace_storage_class: str | None = None  # cluster: a PVC per run
    workspace_size: str = "1Gi"
    # ReadWriteMany lets a sharded stage's pods share the claim from several nodes.
    workspace_access_mode: str = "ReadWriteOnce"
    marquez_url: str | None = None
    marquez_public_url: str | None = None
    jaeger_public_url: str | None = None
    job_service_account: str | None = None
    data_host_path: str | None = None  # a node folder mounted into every stage pod
    data_mount_path: str = "/data"
    poll_seconds: float = 15.0
    trace_store_url: str | None = None  # the otel consumer's query endpoint
    # The lineage warehouse's query endpoint; the otel consumer hosts it unless run
    # with --no-lineage, so it defaults to the trace store's.
    lineage_store_url: str | None = None
    jaeger_query_url: str | None = None
    verify_timeout_seconds: float = 300.0
    # Images spec.image may name besides runner_image (exact, or a prefix ending in *).
    allowed_images: tuple[str, ...] = ()
    # Prefixes every source and sink URI must start with (empty: no prefix rule).
    allowed_uri_prefixes: tuple[str, ...] = ()
    # Private targets http(s) sources, s3 endpoints and clickhouse sinks may reach.
    private_targets: TargetPolicy = field(default_factory=TargetPolicy)
    # Read timeout of every Kubernetes API call the operator makes itself.
    api_timeout_seconds: float = 30.0
    # Runs that may be active at once, operator-wide and in each namespace (0: no limit;
    # a namespace's lineagehub.io/max-active-runs annotation overrides the second).
    max_active_runs: int = 0
    max_active_runs_per_namespace: int = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        e = dict(os.environ) if env is None else env

        def opt(key: str) -> str | None:
            value = e.get(key, "").strip()
            return value or None

        marquez = opt("MARQUEZ_URL")
        return cls(
            runner_image=opt("LINEAGEHUB_RUNNER_IMAGE") or cls.runner_image,
            kafka_bootstrap=opt("KAFKA_BOOTSTRAP"),
            openlineage_namespace=opt("LINEAGEHUB_OPENLINEAGE_NAMESPACE")
            or cls.openlineage_namespace,
            workspace_host_path=opt("LINEAGEHUB_WORKSPACE_HOST_PATH"),
            workspace_storage_class=opt("LINEAGEHUB_WORKSPACE_STORAGE_CLASS"),
            workspace_size=opt("LINEAGEHUB_WORKSPACE_SIZE") or cls.workspace_size,
            workspace_access_mode=_access_mode(opt("LINEAGEHUB_WORKSPACE_ACCESS_MODE")),
            marquez_url=marquez,
            marquez_public_url=opt("MARQUEZ_PUBLIC_URL") or marquez,
            jaeger_public_url=opt("JAEGER_PUBLIC_URL") or opt("JAEGER_QUERY_URL"),
            job_service_account=opt("LINEAGEHUB_JOB_SERVICE_ACCOUNT"),
            data_host_path=opt("LINEAGEHUB_DATA_HOST_PATH"),
            data_mount_path=opt("LINEAGEHUB_DATA_MOUNT_PATH") or cls.data_mount_path,
            poll_seconds=float(opt("LINEAGEHUB_POLL_SECONDS") or cls.poll_seconds),
            trace_store_url=opt("LINEAGEHUB_TRACE_STORE_URL"),
            lineage_store_url=opt("LINEAGEHUB_LINEAGE_STORE_URL")
            or opt("LINEAGEHUB_TRACE_STORE_URL"),
            jaeger_query_url=opt("JAEGER_QUERY_URL"),
            verify_timeout_seconds=float(
                opt("LINEAGEHUB_VERIFY_TIMEOUT_SECONDS") or cls.verify_timeout_seconds
            ),
            allowed_images=_list(opt("LINEAGEHUB_ALLOWED_IMAGES")),
            allowed_uri_prefixes=_list(opt("LINEAGEHUB_ALLOWED_URI_PREFIXES")),
            private_targets=TargetPolicy.from_text(opt(ALLOWED_PRIVATE_TARGETS_ENV)),
            api_timeout_seconds=float(
                opt("LINEAGEHUB_API_TIMEOUT_SECONDS") or cls.api_timeout_seconds
            ),
            max_active_runs=int(opt("LINEAGEHUB_MAX_ACTIVE_RUNS") or 0),
            max_active_runs_per_namespace=int(opt("LINEAGEHUB_MAX_ACTIVE_RUNS_PER_NAMESPACE") or 0),
        )


ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod")


def _access_mode(value: str | None) -> str:
    """The workspace claim's access mode; a value Kubernetes does not know is refused here,
    not at the first run's claim."""
    if value is None:
        return OperatorConfig.workspace_access_mode
    if value not in ACCESS_MODES:
        raise ValueError(
            f"LINEAGEHUB_WORKSPACE_ACCESS_MODE is {value!r}: use one of {', '.join(ACCESS_MODES)}"
        )
    return value
