"""A run's and its stages' times to the millisecond, as the real API server stores them:
written with fractional seconds beside the whole-second Kubernetes-style ones (the CRD
keeps both), in order, and consistent with what Kubernetes itself recorded of the
stages' Jobs and pods."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from tests.helpers import Obj, get
from tests.integration.test_operator import Kubectl, apply, jobs_of, manifest, wait_phase

pytestmark = pytest.mark.controlplane
MILLISECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
STAGES = ("extract", "transform", "load")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_stage_times_have_milliseconds_and_are_in_order(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    apply(kubectl, manifest("timed", namespace))
    status = wait_phase(kubectl, namespace, "timed", "Succeeded")
    stages = {s["name"]: s for s in status["stages"]}
    precise = [status["startTimePrecise"]]
    for name in STAGES:
        precise += [stages[name]["startTimePrecise"], stages[name]["completionTimePrecise"]]
    precise.append(status["completionTimePrecise"])
    assert all(MILLISECONDS.fullmatch(t) for t in precise), precise
    assert any(not t.endswith(".000Z") for t in precise), "sub-second digits are kept"
    moments = [at(t) for t in precise]
    # run start <= extract <= transform <= load <= run end, each stage ending after it
    # starts, the next starting when the operator saw the last one end, the run ending
    # with its last stage.
    assert moments == sorted(moments), precise
    for name in STAGES:
        stage = stages[name]
        assert at(stage["completionTimePrecise"]) > at(stage["startTimePrecise"]), stage
        # The whole-second field is the same instant's second, as Kubernetes writes it.
        assert stage["startTime"] == stage["startTimePrecise"][:19] + "Z", stage
    assert status["startTime"] == status["startTimePrecise"][:19] + "Z"
    assert status["completionTime"] == status["completionTimePrecise"][:19] + "Z"

    # What Kubernetes recorded, to its second: each Job started once the operator had
    # created it, and its pod's container finished once the stage said it had ended
    # (the end in its termination message, which Kubernetes keeps, is the stage's).
    jobs = {
        j["metadata"]["labels"]["lineagehub.io/stage"]: j
        for j in jobs_of(kubectl, namespace, "timed")
    }
    pods = get(kubectl, "pods", "-n", namespace, "-l", "lineagehub.io/pipelinerun=timed")
    finished: dict[str, Obj] = {
        p["metadata"]["labels"]["lineagehub.io/stage"]: p["status"]["containerStatuses"][0][
            "state"
        ]["terminated"]
        for p in pods["items"]
    }
    for name in STAGES:
        stage = stages[name]
        assert stage["startTimePrecise"][:19] <= jobs[name]["status"]["startTime"][:19], name
        assert stage["completionTimePrecise"][:19] <= finished[name]["finishedAt"][:19], name
        said = json.loads(finished[name]["message"])["finishedAt"]
        assert at(said) == at(stage["completionTimePrecise"]), (name, said, stage)
    assert status["completionTimePrecise"] == stages["load"]["completionTimePrecise"]
