"""A run moves on when a stage's pod has succeeded, not when the Job controller marks its
Job Complete (it syncs a Job a fixed second after its pods' events).

Proven by the order of the API server's own Job events, replayed by one watch from a
resourceVersion taken before the run was applied: the next stage's Job is ADDED before
the event in which the previous stage's Job first carries its Complete condition. The
operator could not do that if it waited for Complete.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.config import new_client_from_config

from tests.helpers import wait_until
from tests.integration.test_operator import Kubectl, apply, manifest, wait_phase

pytestmark = pytest.mark.controlplane
STAGES = ("extract", "transform", "load")


@dataclass(frozen=True)
class JobEvent:
    kind: str
    stage: str
    complete: bool
    owner: str | None


def _complete(job: Any) -> bool:
    conditions = (job.status and job.status.conditions) or []
    return any(c.type == "Complete" and c.status == "True" for c in conditions)


class JobWatch:
    """The Jobs of one run, as a list of events in the API server's order."""

    def __init__(self, batch: client.BatchV1Api, ns: str, run: str) -> None:
        self.events: list[JobEvent] = []
        self._stop = threading.Event()
        selector = f"lineagehub.io/pipelinerun={run}"
        listed: Any = batch.list_namespaced_job(ns, label_selector=selector)
        since = str(listed.metadata.resource_version)
        self._thread = threading.Thread(
            target=self._run, args=(batch, ns, selector, since), daemon=True
        )
        self._thread.start()

    def _run(self, batch: client.BatchV1Api, ns: str, selector: str, since: str) -> None:
        stream: Any = watch.Watch()  # type: ignore[no-untyped-call]
        for event in stream.stream(
            batch.list_namespaced_job,
            ns,
            label_selector=selector,
            resource_version=since,
            timeout_seconds=60,
        ):
            job = event["object"]
            owners = job.metadata.owner_references or []
            self.events.append(
                JobEvent(
                    kind=event["type"],
                    stage=job.metadata.labels.get("lineagehub.io/stage", ""),
                    complete=_complete(job),
                    owner=next((o.kind for o in owners if o.controller), None),
                )
            )
            if self._stop.is_set():
                stream.stop()

    def all_complete(self) -> bool:
        return {e.stage for e in self.events if e.complete} == set(STAGES)

    def first(self, stage: str, *, complete: bool = False) -> int:
        """Index of the stage Job's first event (its creation), or of its first event
        with the Complete condition."""
        return next(
            i
            for i, e in enumerate(self.events)
            if e.stage == stage and (e.complete if complete else e.kind == "ADDED")
        )

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def batch(stack: Any) -> client.BatchV1Api:
    api = new_client_from_config(config_file=stack.env["KUBECONFIG"])  # type: ignore[no-untyped-call]
    return client.BatchV1Api(api)


def test_next_stage_job_is_created_before_the_previous_job_is_complete(
    operator: None, kubectl: Kubectl, namespace: str, batch: client.BatchV1Api
) -> None:
    jobs = JobWatch(batch, namespace, "orders")
    try:
        apply(kubectl, manifest("orders", namespace))
        status = wait_phase(kubectl, namespace, "orders", "Succeeded")
        # Each Job still completes, owned by the run as before: the operator only stopped
        # waiting for it.
        wait_until(jobs.all_complete, timeout=60, every=0.2)
    finally:
        jobs.stop()
    stages = {s["name"]: s for s in status["stages"]}
    # The result was read from each pod's termination message.
    assert all(stages[s]["phase"] == "Succeeded" for s in STAGES), stages
    assert all(isinstance(stages[s].get("recordsOut"), int) for s in STAGES), stages
    assert {e.owner for e in jobs.events} == {"PipelineRun"}
    handoffs = {
        (before, after): jobs.first(after) < jobs.first(before, complete=True)
        for before, after in itertools.pairwise(STAGES)
    }
    # One hand-off suffices to prove the operator does not wait for Complete; both are
    # expected, unless the machine delayed the operator by more than the Job
    # controller's one-second batch.
    assert any(handoffs.values()), (handoffs, jobs.events)
