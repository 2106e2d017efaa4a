"""Is this Kafka record an OpenLineage RunEvent Marquez can store? Pure, no I/O.

The schema and its checks live in `lineagehub.openlineage_schema` (shared with the
gateway, so both doors enforce the same rules); this module adds what is specific
to a Kafka record: size, JSON parsing, and the verdict as a `Rejection` for the DLQ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from consumers.dlq import Rejection
from lineagehub.openlineage_schema import EventKind, describe, schema_errors

MAX_EVENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ValidEvent:
    event: dict[str, Any]
    run_id: str
    event_type: str


def validate(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> ValidEvent | Rejection:
    """Parse and validate one record value; a `Rejection` is final (it goes to the DLQ)."""
    if raw is None or not raw.strip():
        return Rejection("empty", "record has no value")
    if len(raw) > max_bytes:
        return Rejection("too_large", f"event is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        event = json.loads(raw)
    except UnicodeDecodeError as exc:
        return Rejection("invalid_json", f"not UTF-8: {exc}")
    except json.JSONDecodeError as exc:
        return Rejection("invalid_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return Rejection("invalid_json", "nesting too deep")
    errors = schema_errors(event, EventKind.RUN)
    if errors:
        return Rejection("schema", describe(errors))
    run_id = str(event["run"]["runId"]).lower()
    return ValidEvent(event=event, run_id=run_id, event_type=str(event.get("eventType", "")))
