"""Idempotency keys: what is stored on a run, and what the OpenAPI document says.

The behaviour against the real API server (replay, races over two replicas, a
restart, a reused key) is in tests/integration/test_gateway_idempotency.py.
"""

from __future__ import annotations

from gateway.app import create_app
from gateway.config import Settings
from gateway.idempotency import (
    BODY_ANNOTATION,
    HEADER,
    KEY_LABEL,
    Idempotency,
    key_problem,
)
from gateway.runs import manifest

REQUEST = {"namespace": "team-a", "name": None, "spec": {"source": {"uri": "file:///x"}}}


def test_the_key_is_scoped_to_the_caller_and_never_stored() -> None:
    mine = Idempotency.of("token:aaaaaaaaaaaa", "order-42", REQUEST)
    theirs = Idempotency.of("token:bbbbbbbbbbbb", "order-42", REQUEST)
    assert mine.key_digest != theirs.key_digest
    assert mine.body_digest == theirs.body_digest
    obj = manifest({"source": {}}, mine.run_name(), "team-a", "rq")
    mine.mark(obj)
    labels, annotations = obj["metadata"]["labels"], obj["metadata"]["annotations"]
    assert len(labels[KEY_LABEL]) <= 63 and "order-42" not in str(obj)
    assert annotations[BODY_ANNOTATION] == mine.body_digest
    assert mine.owns(obj) and not theirs.owns(obj)
    assert mine.run_name() == Idempotency.of("token:aaaaaaaaaaaa", "order-42", REQUEST).run_name()
    # the same caller's key for another namespace is another key (looked up there)
    elsewhere = Idempotency.of("token:aaaaaaaaaaaa", "order-42", {**REQUEST, "namespace": "b"})
    assert elsewhere.key_digest != mine.key_digest and not elsewhere.owns(obj)


def test_the_digest_of_the_request_ignores_key_order_but_not_values() -> None:
    a = Idempotency.of("p", "k", {"spec": {"a": 1, "b": 2}, "namespace": "n"})
    b = Idempotency.of("p", "k", {"namespace": "n", "spec": {"b": 2, "a": 1}})
    c = Idempotency.of("p", "k", {"namespace": "n", "spec": {"b": 2, "a": 3}})
    assert a.body_digest == b.body_digest != c.body_digest
    obj = manifest({}, "x", "n", "rq")
    a.mark(obj)
    assert a.same_request(obj) and not c.same_request(obj)


def test_key_problems_name_the_header_and_the_fix() -> None:
    assert key_problem("0190f3b0-7c1a-7d2e-8f00-0123456789ab") is None
    for bad in ("", "a b", "x" * 256, "tab\there", "é"):
        problem = key_problem(bad)
        assert problem is not None and HEADER in problem and "UUID" in problem


def test_the_openapi_document_describes_the_header() -> None:
    app = create_app(Settings(), publisher=None, runs=None, metrics_store=None)
    operation = app.openapi()["paths"]["/api/v1/pipeline/run"]["post"]
    (param,) = [p for p in operation["parameters"] if p["name"] == HEADER]
    assert param["in"] == "header" and "retry" in param["description"]
    assert "Idempotent-Replayed" in operation["responses"]["201"]["description"]
    assert "Idempotency-Key" in operation["responses"]["422"]["description"]
