"""The few Kubernetes calls the operator makes, async over the official client."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from opentelemetry.trace import Tracer

from lineagehub.api import pipeline
from lineagehub.api.pipelinerun import API_GROUP, API_VERSION, PLURAL
from lineagehub.api.run_patches import cancel_patch
from lineagehub_operator.kube_tracing import call_span
from lineagehub_operator.observed import owner_uid


class NotOurs(Exception):
    """An object with our deterministic name exists but another owner controls it."""


def load_config() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


#: (connect, read) seconds of every call: a silent API server cannot hang a run's daemon.
DEFAULT_TIMEOUT = 30.0


class KubeApi:
    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        tracer: Tracer | None = None,
    ) -> None:
        self._client = api_client or load_config()
        self.tracer = tracer  # the calls that matter to a run, as spans (kube_tracing)
        self.core = client.CoreV1Api(self._client)
        self.batch = client.BatchV1Api(self._client)
        self.custom = client.CustomObjectsApi(self._client)
        self._timeout = (min(timeout, 10.0), timeout)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One API call in a worker thread, always with a request timeout."""
        return await asyncio.to_thread(fn, *args, _request_timeout=self._timeout, **kwargs)

    async def _traced(
        self, name: str, attributes: dict[str, str | int], fn: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """`_call` as a span of the current run's trace (`kube_tracing.call_span`)."""
        with call_span(self.tracer, name, attributes):
            return await self._call(fn, *args, **kwargs)

    async def create_owned(self, obj: dict[str, Any], owner: str) -> dict[str, Any] | None:
        """Create a namespaced ConfigMap/PVC/Job; an existing one of ours counts as created
        (and is returned as it is: None when this call created it)."""
        kind, ns = obj["kind"], obj["metadata"]["namespace"]
        create: Any
        read: Any
        create, read = {
            "ConfigMap": (
                self.core.create_namespaced_config_map,
                self.core.read_namespaced_config_map,
            ),
            "PersistentVolumeClaim": (
                self.core.create_namespaced_persistent_volume_claim,
                self.core.read_namespaced_persistent_volume_claim,
            ),
            "Job": (self.batch.create_namespaced_job, self.batch.read_namespaced_job),
        }[kind]
        where = {"k8s.namespace.name": ns, "k8s.object.name": obj["metadata"]["name"]}
        try:
            await self._traced(f"create {kind}", where, create, ns, obj)
        except ApiException as err:
            if err.status != 409:
                raise
            existing = await self._call(read, obj["metadata"]["name"], ns)
            plain = self._plain(existing)
            found = owner_uid(plain)
            if found != owner:
                raise NotOurs(
                    f"{kind} {ns}/{obj['metadata']['name']} already exists and is owned by "
                    f"{found or 'nobody'}, not by this PipelineRun"
                ) from err
            return plain
        return None

    async def restore_config_map(self, obj: dict[str, Any], owner: str) -> bool:
        """Create the run's ConfigMap `obj`, or put back in the one there (ours) the keys
        it must hold: deleted or changed since, a stage pod cannot start. False when it
        was there as it must be."""
        existing = await self.create_owned(obj, owner)
        if existing is None:
            return True
        data = existing.get("data") or {}
        if all(data.get(key) == value for key, value in obj["data"].items()):
            return False
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        await self._traced(
            "patch ConfigMap",
            {"k8s.namespace.name": ns, "k8s.object.name": name},
            self.core.patch_namespaced_config_map,
            name,
            ns,
            {"data": obj["data"]},
        )
        return True

    def _plain(self, obj: Any) -> dict[str, Any]:
        """A client model as the plain camelCase dict the API server sent."""
        return cast(dict[str, Any], self._client.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    async def delete_job(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                self.batch.delete_namespaced_job,
                name,
                namespace,
                propagation_policy="Background",
            )
        except ApiException as err:
            if err.status != 404:
                raise

    async def delete_claim(self, namespace: str, name: str) -> None:
        """Delete a PersistentVolumeClaim (gone already counts as deleted)."""
        try:
            await self._call(self.core.delete_namespaced_persistent_volume_claim, name, namespace)
        except ApiException as err:
            if err.status != 404:
                raise

    async def read_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A PersistentVolumeClaim, or None when there is none."""
        try:
            found = await self._call(
                self.core.read_namespaced_persistent_volume_claim, name, namespace
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return self._plain(found)

    async def add_claim_owner(
        self, namespace: str, name: str, owner: dict[str, Any], *, attempts: int = 5
    ) -> bool:
        """Add `owner` to a claim's ownerReferences (already there counts as added).
        False when the claim is gone or being deleted: nothing can keep it then.

        A JSON patch that tests the resourceVersion it read: a concurrent change to the
        references is never overwritten, the patch is tried again on what is there now."""
        for _ in range(attempts):
            claim = await self.read_claim(namespace, name)
            meta = (claim or {}).get("metadata") or {}
            if claim is None or meta.get("deletionTimestamp"):
                return False
            refs = meta.get("ownerReferences") or []
            if any(ref.get("uid") == owner["uid"] for ref in refs):
                return True
            ops: list[dict[str, Any]] = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": meta["resourceVersion"],
                },
                {"op": "add", "path": "/metadata/ownerReferences", "value": [*refs, owner]},
            ]
            try:
                await self._call(
                    self.core.patch_namespaced_persistent_volume_claim,
                    name,
                    namespace,
                    ops,
                    _content_type="application/json-patch+json",
                )
                return True
            except ApiException as err:
                if err.status == 404:
                    return False
                if err.status not in (409, 422):  # 422: the test failed, it changed
                    raise
        raise RuntimeError(
            f"PersistentVolumeClaim {namespace}/{name} kept changing: its owners were not updated"
        )

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        pods = await self._traced(
            "list Pods",
            {"k8s.namespace.name": namespace, "k8s.job.name": job},
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"batch.kubernetes.io/job-name={job}",
        )
        return [self._plain(p) for p in pods.items]

    async def latest_pod(self, namespace: str, job: str) -> dict[str, Any] | None:
        items = await self.job_pods(namespace, job)
        if not items:
            return None
        return max(items, key=lambda p: p["metadata"].get("creationTimestamp", ""))

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        result = await self._traced(
            "patch PipelineRun status",
            {"k8s.namespace.name": namespace, "k8s.object.name": name},
            self.custom.patch_namespaced_custom_object_status,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
        )
        return cast(dict[str, Any], result)

    async def _get_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        """One of our objects, or None when there is none."""
        try:
            result = await self._call(
                self.custom.get_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                plural,
                name,
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return cast(dict[str, Any], result)

    async def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Pipeline `name` of `namespace`, or None when there is none."""
        return await self._get_custom(namespace, pipeline.PLURAL, name)

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The PipelineRun `name` of `namespace`, or None when there is none."""
        return await self._get_custom(namespace, PLURAL, name)

    async def create_run(self, run: dict[str, Any]) -> bool:
        """Create a PipelineRun; False when one of that name exists already."""
        try:
            await self._call(
                self.custom.create_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                run["metadata"]["namespace"],
                PLURAL,
                run,
            )
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    async def cancel_run(self, namespace: str, name: str) -> None:
        """Set `spec.cancel` on a run (gone already counts as cancelled)."""
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                cancel_patch(),
            )
        except ApiException as err:
            if err.status != 404:
                raise

    async def patch_pipeline_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        result = await self._call(
            self.custom.patch_namespaced_custom_object_status,
            API_GROUP,
            API_VERSION,
            namespace,
            pipeline.PLURAL,
            name,
            {"status": status},
        )
        return cast(dict[str, Any], result)

    async def delete_run(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
            )
        except ApiException as err:
            if err.status != 404:
                raise


def pod_outcome(pod: dict[str, Any]) -> tuple[str | None, str | None]:
    """(termination message, pod-level reason such as DeadlineExceeded) of a finished pod."""
    status = pod.get("status") or {}
    message = None
    for cs in status.get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if terminated.get("message"):
            message = terminated["message"]
    return message, status.get("reason")
