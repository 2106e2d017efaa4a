"""A run's Kubernetes Events read through the gateway's run store, on the real API server.

Events carry whole-second times, and the API server lists them by name; the console
showed "transform succeeded" above "extract succeeded" when both fell in one second.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import uuid

import pytest
from kubernetes import client, config

from gateway.runs import KubeRuns

pytestmark = pytest.mark.controlplane


def post_events(kubeconfig: str, namespace: str, run: str, reasons: list[str]) -> None:
    """Events about PipelineRun `run`, written one after another in `reasons`' order, all
    stamped with the same second, with names that sort against that order."""
    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
    second = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    for index, reason in enumerate(reasons):
        api.create_namespaced_event(
            namespace,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(name=f"{run}.{len(reasons) - index:02d}"),
                involved_object=client.V1ObjectReference(
                    api_version="lineagehub.io/v1alpha1",
                    kind="PipelineRun",
                    name=run,
                    namespace=namespace,
                ),
                reason=reason,
                message=f"{reason} of {run}",
                type="Normal",
                first_timestamp=second,
                last_timestamp=second,
                count=1,
                source=client.V1EventSource(component="lineage-hub-test"),
            ),
        )


def test_events_of_one_second_come_in_the_order_they_were_written(namespace: str) -> None:
    kubeconfig = os.environ["KUBECONFIG"]
    run = f"run-{uuid.uuid4().hex[:8]}"
    # Reasons in an order neither alphabetical nor by name (names sort backwards).
    reasons = ["StageStarted", "StageSucceeded", "RunAccepted", "StageFailed", "Cancelled"]
    post_events(kubeconfig, namespace, run, reasons)
    # Another run's events are not this run's.
    post_events(kubeconfig, namespace, f"{run}-other", ["Elsewhere"])
    store = KubeRuns(kubeconfig=kubeconfig, namespace=namespace)
    try:
        events = asyncio.run(store.events(namespace, run))
    finally:
        store.close()
    assert [e["reason"] for e in events] == reasons
    assert len({e["time"] for e in events}) == 1
    assert all(e["message"] == f"{e['reason']} of {run}" for e in events)
