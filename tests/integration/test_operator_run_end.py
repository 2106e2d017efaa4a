"""A run's end sent again is the same bytes: the operator sends a run's COMPLETE (or
ABORT) and its root span before the status write that ends the run; when that write is
lost, the next operator decides the end again and sends them again. Made from what was
recorded before the end was decided (the last stage's end as its pod said it, the
cancel's recorded time), they are the very same records, so the stores keep one.

The write is lost for real: a ValidatingAdmissionPolicy on the API server refuses the
status writes that end the test's run, the operator that sent the end is killed, the
policy is removed and another operator takes the run over. Both are the test's own
operators, scoped to its namespace (the stack's is stopped meanwhile)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from consumers.testkit import end_offsets
from lineagehub.topics import LINEAGE_TOPIC, SPANS_TOPIC
from tests.conftest import StackHandle
from tests.helpers import Obj, wait_until
from tests.integration.test_operator import (
    Kubectl,
    apply,
    jobs_of,
    manifest,
    run_status,
    slow_source,  # noqa: F401 - a fixture
    wait_phase,
)
from tests.integration.test_operator_verify_restart import (
    stack_operator_stopped,  # noqa: F401 - a fixture
)
from tests.integration.test_stage_kafka_recovery import read_between
from tests.operator_process import operator_process

pytestmark = pytest.mark.controlplane
Records = list[ConsumerRecord[bytes, bytes]]
REFUSED = "the test loses the status write that ends the run"


def _policy(namespace: str, phase: str) -> list[Obj]:
    """A policy refusing any status write that leaves a run of `namespace` in `phase`."""
    name = f"lose-run-end-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["lineagehub.io"],
                        "apiVersions": ["*"],
                        "operations": ["UPDATE"],
                        "resources": ["pipelineruns/status"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.status) || !has(object.status.phase)"
                    f" || object.status.phase != '{phase}'",
                    "message": REFUSED,
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    return [policy, binding]


def _refused(kubectl: Kubectl, namespace: str, name: str, phase: str) -> bool:
    """Whether the API server refuses, now, a write ending the run in `phase` (a dry
    run: nothing is stored)."""
    patch = json.dumps({"status": {"phase": phase}})
    done: subprocess.CompletedProcess[str] = kubectl(
        "patch",
        "pipelinerun",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
        "--dry-run=server",
        check=False,
    )
    assert done.returncode == 0 or REFUSED in done.stderr, done.stderr
    return done.returncode != 0


@pytest.fixture
def losing_the_end(kubectl: Kubectl, namespace: str) -> Iterator[list[Obj]]:
    """The policy's objects (applied by the test); removed at the end in any case."""
    objects: list[Obj] = []
    yield objects
    for obj in reversed(objects):
        kubectl("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False)


def _records(bootstrap: str, start: dict[TopicPartition, int]) -> Records:
    """Every lineage and span record since `start`, up to what Kafka holds now."""

    async def read() -> Records:
        return await read_between(
            bootstrap, start, await end_offsets(bootstrap, (LINEAGE_TOPIC, SPANS_TOPIC))
        )

    return asyncio.run(read())


def _ends(records: Records, run_id: str, event_type: str) -> list[bytes]:
    """The run-level `event_type` events of the run, as Kafka holds them."""
    found = []
    for record in records:
        if record.topic != LINEAGE_TOPIC or record.key != run_id.encode() or not record.value:
            continue
        event = json.loads(record.value)
        if event["eventType"] == event_type and event["run"]["runId"] == run_id:
            found.append(record.value)
    return found


def _root_spans(records: Records, traceparent: str) -> list[bytes]:
    """The records holding the run's root span (its id is in the run's traceparent)."""
    _, trace_id, span_id, _ = traceparent.split("-")
    found = []
    for record in records:
        if record.topic != SPANS_TOPIC or record.key != trace_id.encode() or not record.value:
            continue
        request = ExportTraceServiceRequest.FromString(record.value)
        spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        if any(s.span_id.hex() == span_id and s.name.startswith("PipelineRun ") for s in spans):
            found.append(record.value)
    return found


def _start_slowly(kubectl: Kubectl, namespace: str, name: str, source: str) -> None:
    """A run whose extract reads from a source that answers after 30 s."""
    doc = manifest(name, namespace)
    doc["spec"]["source"] = {"uri": source, "format": "csv"}
    doc["spec"]["transform"] = {}
    apply(kubectl, doc)


@pytest.mark.parametrize(
    ("phase", "event_type"), [("Succeeded", "COMPLETE"), ("Cancelled", "ABORT")]
)
def test_an_end_sent_again_after_its_status_write_was_lost_is_the_same_bytes(
    stack_operator_stopped: None,  # noqa: F811 - the fixture imported above
    stack: StackHandle,
    kubectl: Kubectl,
    namespace: str,
    losing_the_end: list[Obj],
    slow_source: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    phase: str,
    event_type: str,
) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP"]
    start = asyncio.run(end_offsets(bootstrap, (LINEAGE_TOPIC, SPANS_TOPIC)))
    name, log = "ended", tmp_path / "operator.log"
    if phase == "Cancelled":
        _start_slowly(kubectl, namespace, name, slow_source)
    else:
        apply(kubectl, manifest(name, namespace))
    losing_the_end += _policy(namespace, phase)
    for obj in losing_the_end:
        apply(kubectl, obj)
    wait_until(lambda: _refused(kubectl, namespace, name, phase), timeout=30, every=0.2)

    with operator_process([namespace], log):
        if phase == "Cancelled":
            wait_until(
                lambda: any(
                    (j.get("status") or {}).get("active") for j in jobs_of(kubectl, namespace, name)
                ),
                timeout=60,
            )
            kubectl(
                "patch",
                "pipelinerun",
                name,
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"spec":{"cancel":true}}',
            )
        status = wait_until(lambda: (s := run_status(kubectl, namespace, name)).get("runId") and s)
        run_id, traceparent = status["runId"], status["traceparent"]
        # The operator has sent the end; its write ending the run is refused (and it
        # keeps trying): it is killed, as a crash before the write would end it.
        first = wait_until(
            lambda: _ends(_records(bootstrap, start), run_id, event_type), timeout=120
        )
        wait_until(lambda: REFUSED in log.read_text(), timeout=30)
    assert run_status(kubectl, namespace, name).get("phase") != phase, "the end was not written"

    for obj in reversed(losing_the_end):
        kubectl("delete", obj["kind"], obj["metadata"]["name"])
    wait_until(lambda: not _refused(kubectl, namespace, name, phase), timeout=30, every=0.2)
    with operator_process([namespace], log):
        ended = wait_phase(kubectl, namespace, name, phase, timeout=60)
    records = _records(bootstrap, start)
    sent = _ends(records, run_id, event_type)
    assert len(sent) >= 2 and len(first) >= 1, "sent again by the second operator"
    assert set(sent) == {first[0]}, [json.loads(e)["eventTime"] for e in sent]
    spans = _root_spans(records, traceparent)
    assert len(spans) >= 2 and len(set(spans)) == 1, "the root span sent again is the same"
    # The written end is the one sent.
    event_time = json.loads(first[0])["eventTime"]
    assert _at(event_time) == _at(ended["completionTimePrecise"]), (event_time, ended)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
