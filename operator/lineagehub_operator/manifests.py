"""The objects the operator creates for a run: its config ConfigMap and stage Jobs."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from lineagehub.api.egress import ALLOWED_PRIVATE_TARGETS_ENV
from lineagehub.api.pipelinerun import (
    API_GROUP_VERSION,
    KIND,
    STAGE_CONFIG_ENV,
    STAGES,
    ParentRun,
    PipelineRun,
    RunRef,
    S3Options,
    StageConfig,
    StageName,
)
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.naming import child_name, config_map_name, job_name, labels

WORKSPACE_MOUNT = "/workspace"
TERMINATION_LOG = "/dev/termination-log"
DEADLINE_SLACK_SECONDS = 60


def stage_run_id(parent_run_id: str, stage: StageName) -> str:
    """A stable UUIDv7 for a stage's OpenLineage run, derived from the run's id.

    It keeps the parent's timestamp (so it sorts with it) and takes its random
    bits from a hash of (parent, stage): the same stage always gets the same id,
    across retries and operator restarts.
    """
    parent = uuid.UUID(parent_run_id).bytes
    digest = hashlib.sha256(parent + stage.value.encode()).digest()
    raw = bytearray(parent[:6] + digest[:10])
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def openlineage_names(run: PipelineRun, config: OperatorConfig) -> tuple[str, str]:
    """(namespace, job) of the run in OpenLineage."""
    ol = run.spec.openlineage
    return ol.namespace or config.openlineage_namespace, ol.job or (run.metadata.name or "")


def owner_reference(run: PipelineRun) -> dict[str, Any]:
    return {
        "apiVersion": API_GROUP_VERSION,
        "kind": KIND,
        "name": run.metadata.name,
        "uid": run.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def stage_config(run: PipelineRun, stage: StageName, config: OperatorConfig) -> StageConfig:
    status = run.status
    assert status is not None and status.run_id is not None, "status is initialised first"
    namespace, job = openlineage_names(run, config)
    return StageConfig(
        run_id=stage_run_id(status.run_id, stage),
        stage=stage,
        pipeline_run=RunRef(
            namespace=run.metadata.namespace or "",
            name=run.metadata.name or "",
            uid=run.metadata.uid,
        ),
        source=run.spec.source,
        transform=run.spec.transform,
        sink=run.spec.sink,
        workspace=WORKSPACE_MOUNT,
        openlineage_namespace=namespace,
        openlineage_job=f"{job}.{stage.value}",
        parent=ParentRun(run_id=status.run_id, namespace=namespace, job=job),
        traceparent=status.traceparent,
        shards=run.spec.stage_policy(stage).parallelism,
        input_parts=_parts_before(run, stage),
    )


def _parts_before(run: PipelineRun, stage: StageName) -> int:
    """Parts the stage before `stage` leaves in the workspace: its shard count."""
    if stage.position == 0:
        return 1
    return run.spec.stage_policy(STAGES[stage.position - 1]).parallelism


def config_map(run: PipelineRun, config: OperatorConfig) -> dict[str, Any]:
    name = run.metadata.name or ""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(name),
            "namespace": run.metadata.namespace,
            "labels": labels(name, run.status.run_id if run.status else None),
            "ownerReferences": [owner_reference(run)],
        },
        "data": {f"{s.value}.json": stage_config(run, s, config).to_env_value() for s in STAGES},
    }


def workspace_of(run: PipelineRun) -> str:
    """The run whose workspace this run works in: its own, or for a re-run the earlier
    run's, where the outputs it reuses are."""
    earlier = run.status.rerun_of if run.status else None
    return earlier.workspace if earlier is not None else run.metadata.name or ""


def owns_workspace(run: PipelineRun) -> bool:
    """The run works in a workspace of its own (not a re-run reusing an earlier one's):
    it makes the workspace claim and releases it."""
    return workspace_of(run) == (run.metadata.name or "")


def workspace_claim_name(run: PipelineRun) -> str:
    return child_name(workspace_of(run), "workspace")


def workspace_claim(run: PipelineRun, config: OperatorConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": [config.workspace_access_mode],
        "resources": {"requests": {"storage": config.workspace_size}},
    }
    if config.workspace_storage_class:
        spec["storageClassName"] = config.workspace_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": workspace_claim_name(run),
            "namespace": run.metadata.namespace,
            "labels": labels(run.metadata.name or ""),
            "ownerReferences": [owner_reference(run)],
        },
        "spec": spec,
    }


def _workspace_volume(run: PipelineRun, config: OperatorConfig) -> dict[str, Any]:
    if config.workspace_host_path:
        root = config.workspace_host_path.rstrip("/")
        path = f"{root}/{run.metadata.namespace}/{workspace_of(run)}"
        return {"name": "workspace", "hostPath": {"path": path, "type": "DirectoryOrCreate"}}
    return {"name": "workspace", "persistentVolumeClaim": {"claimName": workspace_claim_name(run)}}


def _one_node_workspace(config: OperatorConfig) -> bool:
    """Whether the workspace can be used from one node only: a host folder, or a claim
    whose access mode is not ReadWriteMany."""
    return bool(config.workspace_host_path) or config.workspace_access_mode != "ReadWriteMany"


def _with_each_other(pod_labels: dict[str, str]) -> dict[str, Any]:
    """Affinity that puts a stage's shard pods on one node. The first pod matches its
    own term, so the scheduler lets it go anywhere; the others follow it."""
    term = {"labelSelector": {"matchLabels": pod_labels}, "topologyKey": "kubernetes.io/hostname"}
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def _s3_options(run: PipelineRun, stage: StageName) -> S3Options | None:
    """The s3 options of what `stage` touches: extract reads the source, load writes the
    sink, transform works in the workspace only (and so gets no credentials)."""
    if stage is StageName.EXTRACT:
        return run.spec.source.s3
    if stage is StageName.LOAD:
        return run.spec.sink.s3
    return None


def s3_credentials_env(run: PipelineRun, stage: StageName) -> list[dict[str, Any]]:
    """`AWS_*` variables from `s3.credentialsSecretRef`, as secretKeyRefs: the values stay
    in the Secret, and the runner's object-store client reads them from its env."""
    options = _s3_options(run, stage)
    ref = options.credentials_secret_ref if options is not None else None
    if ref is None:
        return []
    keys = [
        ("AWS_ACCESS_KEY_ID", ref.access_key_id_key),
        ("AWS_SECRET_ACCESS_KEY", ref.secret_access_key_key),
    ]
    if ref.session_token_key:
        keys.append(("AWS_SESSION_TOKEN", ref.session_token_key))
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key}}}
        for env, key in keys
    ]


def stage_job(run: PipelineRun, stage: StageName, config: OperatorConfig) -> dict[str, Any]:
    """The Job of one stage: retries and the per-attempt timeout come from the spec."""
    status = run.status
    assert status is not None and status.run_id is not None
    name = run.metadata.name or ""
    policy = run.spec.stage_policy(stage)
    job_labels = labels(name, status.run_id, stage)
    env: list[dict[str, Any]] = [
        {
            "name": STAGE_CONFIG_ENV,
            "valueFrom": {
                "configMapKeyRef": {"name": config_map_name(name), "key": f"{stage.value}.json"}
            },
        },
        {"name": "TRACEPARENT", "value": status.traceparent or ""},
        {"name": "OPENLINEAGE_PARENT_RUN_ID", "value": status.run_id},
        {"name": "OTEL_SERVICE_NAME", "value": "lineage-hub-runner"},
        # Said explicitly so that a runtime which maps container paths sees it.
        {"name": "LINEAGEHUB_TERMINATION_LOG", "value": TERMINATION_LOG},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if config.kafka_bootstrap:
        env.append({"name": "KAFKA_BOOTSTRAP", "value": config.kafka_bootstrap})
    # The runner checks every hop of a download (and each address it connects to)
    # against the same private targets the operator allowed.
    env.append({"name": ALLOWED_PRIVATE_TARGETS_ENV, "value": config.private_targets.to_text()})
    env += s3_credentials_env(run, stage)
    container: dict[str, Any] = {
        "name": "stage",
        "image": run.spec.image or config.runner_image,
        "command": ["lineage-hub", "stage", stage.value],
        "env": env,
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE_MOUNT}],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if run.spec.image_pull_policy:
        container["imagePullPolicy"] = run.spec.image_pull_policy.value
    if policy.resources is not None:
        container["resources"] = policy.resources.model_dump(exclude_none=True)
    volumes = [_workspace_volume(run, config)]
    if config.data_host_path:
        volumes.append(
            {
                "name": "data",
                "hostPath": {"path": config.data_host_path, "type": "DirectoryOrCreate"},
            }
        )
        container["volumeMounts"].append({"name": "data", "mountPath": config.data_mount_path})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # A stage never calls the Kubernetes API: no token is minted (a TokenRequest
        # the API server signs) and mounted for each of its pods.
        "automountServiceAccountToken": False,
        # Per attempt: the pod is stopped after the stage's timeout.
        "activeDeadlineSeconds": policy.timeout_seconds,
        "containers": [container],
        "volumes": volumes,
    }
    if config.job_service_account:
        pod_spec["serviceAccountName"] = config.job_service_account
    if policy.parallelism > 1 and _one_node_workspace(config):
        pod_spec["affinity"] = _with_each_other(job_labels)
    shards: dict[str, Any] = {}
    if policy.parallelism > 1:
        # One pod per shard, all at once; each reads JOB_COMPLETION_INDEX. A failed shard
        # fails the Job once the retries are spent, and the stage commits nothing.
        shards = {
            "completionMode": "Indexed",
            "completions": policy.parallelism,
            "parallelism": policy.parallelism,
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, stage),
            "namespace": run.metadata.namespace,
            "labels": job_labels,
            "ownerReferences": [owner_reference(run)],
        },
        "spec": {
            "backoffLimit": policy.retries,
            # A backstop over all attempts; each attempt has its own deadline above.
            "activeDeadlineSeconds": policy.timeout_seconds * (policy.retries + 1)
            + DEADLINE_SLACK_SECONDS,
            "podReplacementPolicy": "Failed",
            **shards,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }
