"""The run policy on the local stack: the real operator, API server and stage runner.

The stack's operator allows exactly what the stack needs (the data volume at /data, the
workspace, sources served on 127.0.0.1 and ::1; see stack/pieces/app.py). Everything
else a spec names is refused before any Job exists, and a download that a server
redirects elsewhere is stopped by the runner at the hop. Only loopback addresses are
ever contacted: the refused targets are refused before a connection is made.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import supervisor
from stack.paths import REPO_ROOT
from stack.pieces.app import Operator
from stack.registry import select
from tests.helpers import Obj, get, wait_until
from tests.loopback_http import QuietHandler, serving

pytestmark = pytest.mark.controlplane
Kubectl = Callable[..., Any]
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
SECRET = "pw-never-shown"
CSV = b"order_id,amount\n1,10.5\n2,20.0\n"


def _proc_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def _stale(pid: int) -> bool:
    """The running operator predates this checkout's operator code or stack settings."""
    started = Path(f"/proc/{pid}").stat().st_mtime
    sources = [*(REPO_ROOT / "operator" / "lineagehub_operator").glob("*.py")]
    sources += [
        REPO_ROOT / "lineagehub" / "api" / "egress.py",
        REPO_ROOT / "stack" / "pieces" / "app.py",
    ]
    if any(p.stat().st_mtime > started for p in sources if p.exists()):
        return True
    wanted = Operator().command().env or {}
    running = _proc_env(pid)
    return any(running.get(k) != wanted.get(k) for k in wanted if k.startswith("LINEAGEHUB_"))


@pytest.fixture(scope="module")
def operator(stack: Any) -> None:
    """The stack's operator, running this checkout's code and policy settings."""
    (piece,) = select(["operator"])
    proc = supervisor.running(piece)
    if proc is not None and _stale(proc.pid):
        supervisor.stop(piece)
    supervisor.up([piece])


def manifest(name: str, ns: str, **spec_changes: Any) -> Obj:
    doc: Obj = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["sink"]["uri"] = f"file:///data/output/{ns}/{name}.parquet"
    doc["spec"]["stages"] = {"defaults": {"retries": 0, "timeoutSeconds": 60}}
    doc["spec"]["transform"] = {}
    doc["spec"].pop("ttlSecondsAfterFinished", None)
    doc["spec"].update(spec_changes)
    return doc


def apply(kubectl: Kubectl, doc: Obj) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def finished(kubectl: Kubectl, ns: str, name: str, timeout: float = 120) -> Obj:
    def check() -> Obj | None:
        obj = get(kubectl, "pipelinerun", name, "-n", ns)
        status: Obj = obj.get("status") or {}
        return obj if status.get("phase") in {"Succeeded", "Failed", "Cancelled"} else None

    result: Obj = wait_until(check, timeout=timeout, every=0.3)
    return result


def condition(status: Obj, kind: str = "Succeeded") -> Obj:
    found: Obj = next(c for c in status["conditions"] if c["type"] == kind)
    return found


Routes = dict[str, tuple[int, dict[str, str], bytes]]


@dataclasses.dataclass
class Served:
    """A loopback HTTP server: fixed routes, and the paths it was asked for."""

    routes: Routes
    url: str = ""
    requests: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    with contextlib.ExitStack() as servers:

        def start(host: str, routes: Routes) -> Served:
            source = Served(routes)

            class Handler(QuietHandler):
                def do_GET(self) -> None:
                    source.requests.append(self.path)
                    code, headers, body = source.routes.get(self.path, (404, {}, b""))
                    self.reply(code, body, headers)

            source.url = servers.enter_context(serving(Handler, host)).url
            return source

        yield start


# (name, spec changes, field the message names, words it says)
HOSTILE: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "metadata",
        {"source": {"uri": "http://169.254.169.254/latest/meta-data/", "format": "csv"}},
        "spec.source.uri",
        "link-local",
    ),
    (
        "private",
        {"source": {"uri": "http://10.0.0.1/orders.csv", "format": "csv"}},
        "spec.source.uri",
        "private",
    ),
    (
        "other-loopback",
        {"source": {"uri": "http://127.0.0.2:8080/orders.csv", "format": "csv"}},
        "spec.source.uri",
        "loopback",
    ),
    (
        "token",
        {
            "source": {
                "uri": "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
                "format": "csv",
            }
        },
        "spec.source.uri",
        "outside the folders",
    ),
    (
        "climb",
        {"source": {"uri": "file:///data/../etc/passwd", "format": "csv"}},
        "spec.source.uri",
        "climbs out",
    ),
    (
        "sink-outside",
        {"sink": {"uri": "file:///tmp/out.csv", "format": "csv"}},
        "spec.sink.uri",
        "outside the folders",
    ),
    (
        "image",
        {"image": "docker.io/library/busybox:1.36"},
        "spec.image",
        "not one the operator runs",
    ),
    (
        "s3-endpoint",
        {
            "source": {
                "uri": "s3://bucket/orders.csv",
                "format": "csv",
                "s3": {"endpoint": "http://169.254.170.2"},
            }
        },
        "spec.source.s3.endpoint",
        "link-local",
    ),
    (
        "ch-table",
        {"sink": {"uri": f"clickhouse://u:{SECRET}@127.0.0.1:9000/db.t`x", "format": "clickhouse"}},
        "spec.sink.uri",
        "plain identifiers",
    ),
]


def test_hostile_specs_fail_with_policy_violation_before_any_job(
    operator: None, kubectl: Kubectl, namespace: str
) -> None:
    for name, changes, _, _ in HOSTILE:
        apply(kubectl, manifest(name, namespace, **changes))
    for name, _, field, words in HOSTILE:
        obj = finished(kubectl, namespace, name)
        status = obj["status"]
        assert status["phase"] == "Failed", name
        cond = condition(status)
        assert (cond["status"], cond["reason"]) == ("False", "PolicyViolation"), name
        assert field in cond["message"] and words in cond["message"], (name, cond["message"])
        assert SECRET not in json.dumps(obj["status"]), name
        # Nothing to wait for: the run produced no lineage and no trace.
        assert condition(status, "LineageRecorded")["reason"] == "PolicyViolation", name
        assert condition(status, "TraceRecorded")["reason"] == "PolicyViolation", name
    labelled = "lineagehub.io/pipelinerun"
    for kind in ("jobs", "configmaps", "persistentvolumeclaims"):
        items = get(kubectl, kind, "-n", namespace, "-l", labelled)["items"]
        assert items == [], f"{kind} were created for refused runs: {items}"

    # kopf posts a run's Events from a queue of its own, while or after the refusal is
    # written: wait for each refused run's Event rather than race it.
    def refused_named() -> set[str] | None:
        selector = "reason=PolicyViolation"
        events = get(kubectl, "events", "-n", namespace, "--field-selector", selector)
        names = {e["involvedObject"]["name"] for e in events["items"]}
        return names if len(names) >= len(HOSTILE) else None

    assert wait_until(refused_named, timeout=60) == {name for name, *_ in HOSTILE}


def test_a_redirect_to_a_refused_target_stops_the_download(
    operator: None, kubectl: Kubectl, namespace: str, served: Callable[..., Served]
) -> None:
    """127.0.0.1 is allowed on the stack, 127.0.0.2 is not: the stage follows the first
    server's redirect only as far as the hop check, and never asks the second."""
    target = served("127.0.0.2", {"/orders.csv": (200, {}, CSV)})
    origin = served(
        "127.0.0.1",
        {"/orders.csv": (302, {"Location": f"{target.url}/orders.csv"}, b"")},
    )
    doc = manifest(
        "redirect", namespace, source={"uri": f"{origin.url}/orders.csv", "format": "csv"}
    )
    apply(kubectl, doc)
    status = finished(kubectl, namespace, "redirect")["status"]
    cond = condition(status)
    assert cond["reason"] == "StageFailed", cond
    assert f"redirects to {target.url}/orders.csv" in cond["message"]
    assert "127.0.0.2 is a loopback address" in cond["message"]
    assert origin.requests == ["/orders.csv"]
    assert target.requests == [], "the refused hop was never requested"


def test_credentials_in_a_source_uri_never_reach_the_status(
    operator: None, kubectl: Kubectl, namespace: str, served: Callable[..., Served]
) -> None:
    source = served("127.0.0.1", {"/orders.csv": (200, {"Content-Type": "text/csv"}, CSV)})
    host = source.url.removeprefix("http://")
    ok = manifest(
        "creds", namespace, source={"uri": f"http://u:{SECRET}@{host}/orders.csv", "format": "csv"}
    )
    missing = manifest(
        "creds-missing",
        namespace,
        source={"uri": f"http://u:{SECRET}@{host}/missing.csv", "format": "csv"},
    )
    apply(kubectl, ok)
    apply(kubectl, missing)
    failed = finished(kubectl, namespace, "creds-missing")["status"]
    assert condition(failed)["reason"] == "StageFailed"
    assert f"http://{host}/missing.csv" in condition(failed)["message"]
    assert SECRET not in json.dumps(failed)

    def lineage_written() -> Obj | None:
        status: Obj = get(kubectl, "pipelinerun", "creds", "-n", namespace).get("status") or {}
        return status if (status.get("lineage") or {}).get("inputs") else None

    status = wait_until(lineage_written, timeout=180, every=0.5)
    assert status["phase"] == "Succeeded"
    assert {"namespace": f"http://{host}", "name": "/orders.csv"} in status["lineage"]["inputs"]
    assert SECRET not in json.dumps(status)
    events = get(kubectl, "events", "-n", namespace)["items"]
    assert not [e for e in events if SECRET in (e.get("message") or "")]
