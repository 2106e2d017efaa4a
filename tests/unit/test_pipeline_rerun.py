"""Re-runs: which earlier runs can be continued and from where, the reused stages that
get no Job, the earlier run's workspace, the parent facet on the lineage, the CLI's
manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.decide import CreateJob, EmitRunEvent, RunIds, decide
from lineagehub_operator.manifests import owns_workspace, stage_job, workspace_claim_name
from lineagehub_operator.observed import JobState, ObservedJob
from lineagehub_operator.rerun import (
    adopted_claim,
    claim_owner,
    continue_run,
    needs_source,
    reused_claim_name,
)
from lineagehub_operator.rerun_cli import rerun_manifest
from lineagehub_operator.resolve import Unresolvable
from lineagehub_operator.run_telemetry import with_rerun_parent
from lineagehub_operator.verify import ran_stages

from lineagehub.api.pipelinerun import Phase, PipelineRun, Reason, StageName
from lineagehub.telemetry.lineage import run_event

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
EARLIER_ID = "019ac0f0-0000-7000-8000-0000000000aa"
IDS = RunIds(
    run_id="019ac0f0-0000-7000-8000-000000000001",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
)
CONFIG = OperatorConfig(workspace_host_path="/srv/ws")
SPEC: dict[str, Any] = {
    "source": {"uri": "file:///data/in.csv", "format": "csv"},
    "transform": {"filter": "amount > 0"},
    "sink": {"uri": "file:///data/out.parquet", "format": "parquet"},
    "openlineage": {"namespace": "shop", "job": "orders"},
}


def stage(name: str, phase: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "phase": phase, **kw}


def earlier(phases: tuple[str, str, str], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "orders-1", "namespace": "ns"},
        "spec": SPEC,
        "status": {
            "phase": "Failed",
            "runId": EARLIER_ID,
            "stages": [
                stage("extract", phases[0], recordsIn=10, recordsOut=10),
                stage("transform", phases[1], recordsIn=10, recordsOut=8),
                stage("load", phases[2]),
            ],
            **status,
        },
    }


def rerun_body(spec: dict[str, Any] | None = None, **rerun: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "orders-2", "namespace": "ns", "uid": "u-2", "generation": 1},
        "spec": {**(spec or SPEC), "rerun": {"of": "orders-1", **rerun}},
    }


FAILED_AT_LOAD = ("Succeeded", "Succeeded", "Failed")


@pytest.mark.parametrize(
    ("found", "rerun", "spec", "words"),
    [
        (None, {}, None, ["spec.rerun.of", "no PipelineRun orders-1"]),
        (earlier(FAILED_AT_LOAD, phase="Running"), {}, None, ["has not finished"]),
        (
            earlier(("Succeeded",) * 3, phase="Succeeded"),
            {},
            None,
            ["spec.rerun.fromStage", "every stage"],
        ),
        (
            earlier(("Succeeded", "Failed", "Pending")),
            {"fromStage": "load"},
            None,
            ["spec.rerun.fromStage", "stage transform", "start at transform or earlier"],
        ),
        (
            earlier(FAILED_AT_LOAD),
            {},
            {**SPEC, "transform": {"filter": "amount > 1"}},
            ["spec.transform differs"],
        ),
        (
            earlier(FAILED_AT_LOAD),
            {"fromStage": "transform"},
            {**SPEC, "source": {"uri": "file:///data/other.csv", "format": "csv"}},
            ["spec.source differs"],
        ),
        (
            earlier(FAILED_AT_LOAD),
            {},
            {**SPEC, "stages": {"transform": {"parallelism": 2}}},
            ["spec.rerun.of", "transform parallelism is 2", "in 1 parts", "to 1"],
        ),
        (
            earlier(FAILED_AT_LOAD),
            {"fromStage": "transform"},
            {**SPEC, "parallelism": 3},
            ["spec.rerun.of", "extract parallelism is 3", "spec.parallelism"],
        ),
    ],
    ids=[
        "missing",
        "running",
        "all succeeded",
        "skips a failed stage",
        "transform",
        "source",
        "transform parts",
        "extract parts",
    ],
)
def test_a_rerun_that_cannot_continue_fails_naming_the_field(
    found: dict[str, Any] | None, rerun: dict[str, Any], spec: Any, words: list[str]
) -> None:
    outcome = continue_run(found, rerun_body(spec, **rerun), CONFIG)
    assert isinstance(outcome, Unresolvable)
    assert outcome.reason == Reason.INVALID_RERUN
    for word in words:
        assert word in outcome.message


def test_a_rerun_starts_at_the_first_unfinished_stage_and_reuses_the_rest() -> None:
    body = rerun_body()
    assert needs_source(body)
    fields = continue_run(earlier(FAILED_AT_LOAD), body, CONFIG)
    assert isinstance(fields, dict)
    assert fields["rerunOf"] == {
        "name": "orders-1",
        "runId": EARLIER_ID,
        "namespace": "shop",
        "job": "orders",
        "fromStage": "load",
        "workspace": "orders-1",
    }
    extract, transform, load = fields["stages"]
    assert (extract["phase"], extract["reason"], extract["recordsOut"]) == (
        "Succeeded",
        "Reused",
        10,
    )
    assert (transform["phase"], transform["reason"], transform["recordsOut"]) == (
        "Succeeded",
        "Reused",
        8,
    )
    assert load == {"name": "load", "phase": "Pending", "attempts": 0}
    assert not needs_source({**body, "status": fields})


def earlier_rerun() -> dict[str, Any]:
    """A failed re-run of orders-0, working in orders-0's workspace."""
    return earlier(
        FAILED_AT_LOAD,
        rerunOf={
            "name": "orders-0",
            "runId": EARLIER_ID,
            "namespace": "shop",
            "job": "orders",
            "fromStage": "load",
            "workspace": "orders-0",
        },
    )


def test_a_rerun_of_a_rerun_works_in_the_first_runs_workspace() -> None:
    chained = earlier_rerun()
    fields = continue_run(chained, rerun_body(fromStage="transform"), CONFIG)
    assert isinstance(fields, dict)
    assert fields["rerunOf"]["workspace"] == "orders-0"
    assert [s["phase"] for s in fields["stages"]] == ["Succeeded", "Pending", "Pending"]


def started_rerun() -> PipelineRun:
    body = rerun_body()
    fields = continue_run(earlier(FAILED_AT_LOAD), body, CONFIG)
    assert isinstance(fields, dict)
    run = PipelineRun.model_validate({**body, "status": fields})
    return run.model_copy(update={"status": decide(run, {}, T0, IDS).status})


def test_the_reused_stages_get_no_job_and_the_first_job_starts_the_run() -> None:
    run = started_rerun()
    assert run.status is not None and run.status.progress == "2/3"
    first = decide(run, {}, T0, IDS)
    assert [a for a in first.actions if isinstance(a, CreateJob)] == [CreateJob(StageName.LOAD)]
    assert EmitRunEvent("START") in first.actions
    load = ObservedJob(
        stage=StageName.LOAD,
        name="orders-2-load",
        uid="j",
        state=JobState.COMPLETE,
        attempts=1,
        start_time=T0,
    )
    ran = run.model_copy(update={"status": first.status})
    done = decide(ran, {StageName.LOAD: load}, T0, IDS)
    assert done.status.phase == Phase.SUCCEEDED and done.status.progress == "3/3"
    assert [s.name for s in ran_stages(done.status)] == [StageName.LOAD]


def test_a_rerun_works_in_the_earlier_runs_workspace() -> None:
    run = started_rerun()
    job = stage_job(run, StageName.LOAD, CONFIG)
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    assert volume["hostPath"]["path"] == "/srv/ws/ns/orders-1"
    assert workspace_claim_name(run) == "orders-1-workspace"


def test_the_rerun_lineage_names_the_earlier_run_as_parent() -> None:
    run = started_rerun()
    payload = run_event("START", run_id=IDS.run_id, namespace="shop", job="orders", event_time=T0)
    event = json.loads(with_rerun_parent(run, payload))
    parent = event["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == EARLIER_ID
    assert parent["job"] == {"namespace": "shop", "name": "orders", "facets": {}}
    assert event["run"]["runId"] == IDS.run_id
    plain = PipelineRun.model_validate({"metadata": {"name": "x"}, "spec": SPEC})
    assert with_rerun_parent(plain, payload) == payload


def test_the_cli_copies_the_spec_as_written_and_adds_rerun() -> None:
    inline = rerun_manifest({**earlier(FAILED_AT_LOAD), "spec": {**SPEC, "cancel": True}}, None)
    assert inline["metadata"] == {"namespace": "ns", "generateName": "orders-1-rerun-"}
    assert inline["spec"]["rerun"] == {"of": "orders-1"}
    assert inline["spec"]["cancel"] is False
    assert inline["spec"]["source"] == SPEC["source"]
    snapshot = dict(SPEC)
    ref = {
        "metadata": {"name": "orders-1", "namespace": "ns"},
        "spec": {"pipelineRef": {"name": "orders"}, "params": {"date": "2026-11-30"}},
        "status": {"pipelineSpec": snapshot},
    }
    made = rerun_manifest(ref, StageName.TRANSFORM, "again")
    assert made["metadata"]["name"] == "again"
    assert made["spec"] == {
        "pipelineRef": {"name": "orders"},
        "params": {"date": "2026-11-30"},
        "rerun": {"of": "orders-1", "fromStage": "transform"},
        "suspend": False,
        "cancel": False,
    }


# --- A cluster workspace: a PersistentVolumeClaim per run, not a host folder ---

CLAIMS = OperatorConfig()  # no host path: each run's workspace is a claim


def claim(name: str = "orders-1-workspace", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", **meta}}


def rerun_from(fields: dict[str, Any], body: dict[str, Any]) -> PipelineRun:
    """The re-run as the operator holds it once it has started."""
    run = PipelineRun.model_validate({**body, "status": fields})
    return run.model_copy(update={"status": decide(run, {}, T0, IDS).status})


@pytest.mark.parametrize(
    ("found", "rerun", "present", "words"),
    [
        (
            earlier(("Succeeded",) * 3, phase="Succeeded"),
            {"fromStage": "load"},
            None,
            ["spec.rerun.of", "orders-1-workspace", "transform output", "succeeded releases"],
        ),
        (
            earlier(("Succeeded",) * 3, phase="Succeeded"),
            {"fromStage": "transform"},
            None,
            ["spec.rerun.of", "extract output", "start the re-run at extract"],
        ),
        (
            earlier(FAILED_AT_LOAD),
            {},
            None,
            ["spec.rerun.of", "orders-1-workspace", "went with the run"],
        ),
        (
            earlier(FAILED_AT_LOAD),
            {},
            claim(deletionTimestamp="2026-11-30T10:00:00Z"),
            ["spec.rerun.of", "is gone"],
        ),
    ],
    ids=["succeeded from load", "succeeded from transform", "claim deleted", "claim deleting"],
)
def test_a_rerun_whose_reused_claim_is_gone_is_refused(
    found: dict[str, Any], rerun: dict[str, Any], present: dict[str, Any] | None, words: list[str]
) -> None:
    outcome = continue_run(found, rerun_body(**rerun), CLAIMS, claim=present)
    assert isinstance(outcome, Unresolvable), outcome
    assert outcome.reason == Reason.INVALID_RERUN
    for word in words:
        assert word in outcome.message


def test_a_rerun_reusing_a_claim_mounts_it_becomes_its_owner_and_never_releases_it() -> None:
    body = rerun_body()
    fields = continue_run(earlier(FAILED_AT_LOAD), body, CLAIMS, claim=claim())
    assert isinstance(fields, dict)
    assert adopted_claim(fields, body, CLAIMS) == "orders-1-workspace"
    owner = claim_owner(body)
    assert (owner["kind"], owner["name"], owner["uid"]) == ("PipelineRun", "orders-2", "u-2")
    assert owner["controller"] is False  # the earlier run stays the claim's controller
    run = rerun_from(fields, body)
    assert not owns_workspace(run)  # so it neither makes nor deletes a claim
    volume = stage_job(run, StageName.LOAD, CLAIMS)["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == "orders-1-workspace"


def test_a_rerun_of_a_rerun_reuses_and_adopts_the_first_runs_claim() -> None:
    chained = earlier_rerun()
    assert reused_claim_name(chained) == "orders-0-workspace"
    body = rerun_body()
    fields = continue_run(chained, body, CLAIMS, claim=claim("orders-0-workspace"))
    assert isinstance(fields, dict)
    assert adopted_claim(fields, body, CLAIMS) == "orders-0-workspace"


@pytest.mark.parametrize(
    "found",
    [
        earlier(("Pending",) * 3, phase="Cancelled"),  # cancelled while Queued: no Job
        earlier(("Failed", "Pending", "Pending")),  # failed at extract
        earlier(("Succeeded",) * 3, phase="Succeeded"),  # its claim released
    ],
    ids=["never ran", "failed at extract", "succeeded"],
)
def test_a_rerun_from_extract_works_in_a_claim_of_its_own(found: dict[str, Any]) -> None:
    body = rerun_body(fromStage="extract")
    fields = continue_run(found, body, CLAIMS, claim=None)
    assert isinstance(fields, dict), fields
    assert fields["rerunOf"]["workspace"] == "orders-2"
    assert adopted_claim(fields, body, CLAIMS) is None
    run = rerun_from(fields, body)
    assert owns_workspace(run)  # so it makes its claim, and releases it on success
    volume = stage_job(run, StageName.EXTRACT, CLAIMS)["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == "orders-2-workspace"


def test_a_host_folder_workspace_is_never_refused_for_a_missing_claim() -> None:
    body = rerun_body(fromStage="load")
    fields = continue_run(earlier(("Succeeded",) * 3, phase="Succeeded"), body, CONFIG)
    assert isinstance(fields, dict)
    assert adopted_claim(fields, body, CONFIG) is None
