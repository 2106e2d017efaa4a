"""Idempotency-Key for `POST /api/v1/pipeline/run`: a retried create returns the same run.

The key is kept on the PipelineRun itself, so it survives gateway restarts and holds
across replicas with no store of the gateway's own:

* the label `lineagehub.io/idempotency-key` holds a digest of the caller's identity,
  the namespace and the key (the key itself may be anything a client chose: it is
  never stored, and one caller's key never matches another caller's run). A key is the
  caller's in one namespace: a run lives in one, and the lookup and the name collision
  below happen there, so the same key sent for another namespace is another key;
* the annotation `lineagehub.io/idempotency-body` holds a digest of the request (the
  spec and the name), so a key reused for a different request is told apart from a
  retry.

Two requests racing with the same key and the same body create one run: the run's
name is fixed by the request (the caller's `name`, else one derived from the key's
digest), and the API server lets only one create of a name succeed; the loser reads
the winner's run and answers it as a replay.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_LABEL = "lineagehub.io/idempotency-key"
BODY_ANNOTATION = "lineagehub.io/idempotency-body"
MAX_KEY_CHARS = 255
# Visible ASCII: what a header carries without encoding questions (a UUID fits).
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_CHARS}}}")
_FIX = f"send at most {MAX_KEY_CHARS} visible ASCII characters, such as a UUID"


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an Idempotency-Key, or None."""
    if _KEY.fullmatch(key):
        return None
    if not key:
        return f"the {HEADER} header is empty: {_FIX}"
    return f"the {HEADER} header is not {MAX_KEY_CHARS} visible ASCII characters or fewer: {_FIX}"


@dataclass(frozen=True)
class Idempotency:
    """One request's key, scoped to its caller, and the digest of what it asks for."""

    key_digest: str
    body_digest: str

    @classmethod
    def of(cls, principal_id: str, key: str, request: dict[str, Any]) -> Idempotency:
        namespace = request.get("namespace") or ""
        scoped = hashlib.sha256(f"{principal_id}\n{namespace}\n{key}".encode()).hexdigest()
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        # 40 hex: a label value holds at most 63 characters; 160 bits never collide.
        return cls(scoped[:40], hashlib.sha256(canonical.encode()).hexdigest())

    @property
    def selector(self) -> str:
        return f"{KEY_LABEL}={self.key_digest}"

    def run_name(self) -> str:
        """The name of a run created without one: fixed by the key, so a racing retry
        collides at the API server instead of creating a second run."""
        return f"run-{self.key_digest[:20]}"

    def mark(self, obj: dict[str, Any]) -> None:
        """Put the key's label and the body's annotation on a manifest."""
        meta = obj["metadata"]
        meta.setdefault("labels", {})[KEY_LABEL] = self.key_digest
        meta.setdefault("annotations", {})[BODY_ANNOTATION] = self.body_digest

    def owns(self, obj: dict[str, Any]) -> bool:
        """Was `obj` created under this caller's key?"""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return bool(labels.get(KEY_LABEL) == self.key_digest)

    def same_request(self, obj: dict[str, Any]) -> bool:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return bool(annotations.get(BODY_ANNOTATION) == self.body_digest)


def mismatch_message(name: str) -> str:
    return (
        f"the {HEADER} was already used for a different request (it created PipelineRun "
        f"{name!r}): send a new {HEADER} for a new run, or repeat the original request "
        "unchanged to get that run back"
    )
