"""Is this Kafka record an OpenLineage event Marquez stores? Pure, no I/O, never raises.

The rules live in `lineagehub.openlineage_schema` (shared with the gateway, so both
doors enforce the same ones: Marquez's); this module adds what is specific to a
Kafka record: size, JSON parsing, and the verdict as a `Rejection` for the DLQ.
RunEvents, DatasetEvents and JobEvents all pass: Marquez takes the three at
`POST /api/v1/lineage`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from consumers.dlq import Rejection
from lineagehub.openlineage_schema import (
    EventKind,
    describe,
    event_kind,
    loads,
    record_key,
    schema_errors,
)

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ValidEvent:
    """What the consumer needs of a valid event. The parsed event itself is not kept:
    Marquez is sent the record's bytes, and hundreds of parsed events held while their
    records wait for a worker cost the garbage collector time on every pass."""

    run_id: str  # lower case; "" for a DatasetEvent or JobEvent
    event_type: str  # "" when absent (always for static events)
    kind: EventKind = EventKind.RUN
    key: str = ""  # the ordering key: the run id, or `dataset:<ns>/<name>`, `job:<ns>/<name>`


def validate(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> ValidEvent | Rejection:
    """Parse and validate one record value; a `Rejection` is final (it goes to the DLQ)."""
    if raw is None or not raw.strip():
        return Rejection("empty", "record has no value")
    if len(raw) > max_bytes:
        return Rejection("too_large", f"event is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        return _validate(raw)
    except Exception as exc:
        # A bug here must not stop the partition (the record would be re-read forever
        # after every restart): dead-letter it, it can be replayed once fixed.
        log.exception("validator error")
        return Rejection("validator_error", f"{type(exc).__name__}: {exc}"[:500])


def _validate(raw: bytes) -> ValidEvent | Rejection:
    event, problem = loads(raw)
    if problem is not None:
        return Rejection("invalid_json", problem)
    if not isinstance(event, dict):
        errors = schema_errors(event)
        return Rejection("schema", describe(errors))
    kind = event_kind(event)
    errors = schema_errors(event, kind)
    if errors:
        return Rejection("schema", describe(errors))
    key = record_key(event, kind)
    event_type = event.get("eventType") if kind is EventKind.RUN else None
    return ValidEvent(
        run_id=key if kind is EventKind.RUN else "",
        event_type="" if event_type is None else str(event_type),
        kind=kind,
        key=key,
    )
