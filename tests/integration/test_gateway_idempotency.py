"""Idempotency-Key on `POST /api/v1/pipeline/run`, against the real kube-apiserver.

Two gateway replicas (two apps, no shared memory) take concurrent creates with one
key; the API server must end up holding one PipelineRun. A fresh gateway (a restart)
still answers a retry with that run, because the key lives on the run itself. The
runs are suspended: nothing here needs them to execute.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.auth import parse_tokens
from gateway.config import Settings
from gateway.idempotency import BODY_ANNOTATION, HEADER, KEY_LABEL, REPLAYED_HEADER
from gateway.serve import ServerThread
from stack.paths import REPO_ROOT
from tests.conftest import Kubectl
from tests.helpers import Obj
from tests.promparse import value

pytestmark = [pytest.mark.controlplane]

TOKEN = "idempotency-writer-token-01"
OTHER = "idempotency-writer-token-02"
EXAMPLE = yaml.safe_load((REPO_ROOT / "examples" / "pipelinerun.yaml").read_text())
RACERS = 12


def _settings(env: dict[str, str]) -> Settings:
    return Settings(
        tokens=parse_tokens(f"{TOKEN}:runs:write,runs:read;{OTHER}:runs:write,runs:read"),
        kubeconfig=env["KUBECONFIG"],
        rate_per_s=0,
    )


@pytest.fixture
def replicas(stack: Any) -> Iterator[tuple[ServerThread, ServerThread]]:
    with (
        ServerThread(create_app(_settings(stack.env), publisher=None, metrics_store=None)) as a,
        ServerThread(create_app(_settings(stack.env), publisher=None, metrics_store=None)) as b,
    ):
        yield a, b


def _body(namespace: str, **extra: Any) -> Obj:
    spec: Obj = copy.deepcopy(EXAMPLE["spec"])
    spec["sink"]["uri"] = f"file:///data/output/{namespace}/idempotent.parquet"
    return {**spec, "suspend": True, "namespace": namespace, **extra}


def _post(url: str, body: Obj, key: str, token: str = TOKEN) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/pipeline/run",
        json=body,
        headers={"Authorization": f"Bearer {token}", HEADER: key},
        timeout=30,
    )


def _runs_with_key(kubectl: Kubectl, namespace: str, digest: str | None = None) -> list[Obj]:
    selector = f"{KEY_LABEL}={digest}" if digest else KEY_LABEL
    out = kubectl("get", "pipelineruns", "-n", namespace, "-l", selector, "-o", "yaml")
    items: list[Obj] = yaml.safe_load(out.stdout)["items"]
    return items


def _race(urls: list[str], body: Obj, key: str) -> list[httpx.Response]:
    """RACERS creates at once (a barrier releases them together), spread over `urls`."""
    barrier = threading.Barrier(RACERS)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return _post(urls[i % len(urls)], body, key)

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


@pytest.mark.parametrize("named", [False, True], ids=["generated-name", "caller-name"])
def test_concurrent_creates_with_one_key_over_two_replicas_make_one_run(
    stack: Any,
    replicas: tuple[ServerThread, ServerThread],
    kubectl: Kubectl,
    namespace: str,
    named: bool,
) -> None:
    key = str(uuid.uuid4())
    body = _body(namespace, **({"name": "named-once"} if named else {}))
    responses = _race([r.url for r in replicas], body, key)
    assert [r.status_code for r in responses] == [201] * RACERS, [r.text for r in responses]
    assert len({(r.json()["name"], r.json()["uid"]) for r in responses}) == 1
    fresh = [r for r in responses if r.headers.get(REPLAYED_HEADER) != "true"]
    assert len(fresh) == 1, "exactly one request created the run, the others replayed it"
    runs = _runs_with_key(kubectl, namespace)
    assert len(runs) == 1, [r["metadata"]["name"] for r in runs]
    run = runs[0]
    assert run["metadata"]["name"] == responses[0].json()["name"]
    if named:
        assert run["metadata"]["name"] == "named-once"
    assert len(run["metadata"]["annotations"][BODY_ANNOTATION]) == 64
    assert key not in yaml.safe_dump(run)  # only digests are stored

    # A restarted gateway (a new app: nothing in memory) answers the retry from the run.
    with ServerThread(create_app(_settings(stack.env), publisher=None, metrics_store=None)) as g:
        again = _post(g.url, body, key)
        metrics = httpx.get(f"{g.url}/metrics", timeout=10).text
    assert again.status_code == 201 and again.headers[REPLAYED_HEADER] == "true"
    assert again.json()["uid"] == run["metadata"]["uid"]
    assert value(metrics, "lineagehub_gateway_pipelineruns_replayed_total") == 1
    assert value(metrics, "lineagehub_gateway_pipelineruns_created_total") == 0
    assert len(_runs_with_key(kubectl, namespace)) == 1


def test_the_same_key_for_another_request_is_refused_naming_the_header(
    replicas: tuple[ServerThread, ServerThread], kubectl: Kubectl, namespace: str
) -> None:
    key = str(uuid.uuid4())
    first = _post(replicas[0].url, _body(namespace), key)
    assert first.status_code == 201, first.text
    changed = _body(namespace)
    changed["sink"]["uri"] = f"file:///data/output/{namespace}/another.parquet"
    refused = _post(replicas[1].url, changed, key)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert HEADER in detail and first.json()["name"] in detail and "new" in detail
    assert len(_runs_with_key(kubectl, namespace)) == 1


def test_keys_belong_to_the_caller(
    replicas: tuple[ServerThread, ServerThread], kubectl: Kubectl, namespace: str
) -> None:
    key = str(uuid.uuid4())
    mine = _post(replicas[0].url, _body(namespace), key, TOKEN)
    theirs = _post(replicas[0].url, _body(namespace), key, OTHER)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert REPLAYED_HEADER not in theirs.headers
    assert mine.json()["uid"] != theirs.json()["uid"]
    assert len(_runs_with_key(kubectl, namespace)) == 2


def test_a_name_taken_by_a_run_without_the_key_is_a_409(
    replicas: tuple[ServerThread, ServerThread], namespace: str
) -> None:
    plain = httpx.post(
        f"{replicas[0].url}/api/v1/pipeline/run",
        json=_body(namespace, name="taken"),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert plain.status_code == 201, plain.text
    keyed = _post(replicas[1].url, _body(namespace, name="taken"), str(uuid.uuid4()))
    assert keyed.status_code == 409, keyed.text
    assert "already exists" in keyed.json()["detail"]


@pytest.mark.parametrize("key", ["", "a b", "é", "x" * 256])
def test_a_malformed_key_is_a_400_naming_the_header(
    replicas: tuple[ServerThread, ServerThread], namespace: str, key: str
) -> None:
    r = httpx.post(
        f"{replicas[0].url}/api/v1/pipeline/run",
        json=_body(namespace),
        headers=[(b"Authorization", f"Bearer {TOKEN}".encode()), (HEADER.encode(), key.encode())],
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert HEADER in r.json()["detail"]
