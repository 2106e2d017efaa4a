"""Is this Kafka record an OpenLineage RunEvent Marquez can store? Pure, no I/O.

The schema (`runevent.schema.json`) is our hand-written subset of the OpenLineage
2-0-2 spec (see its `$comment`); formats are checked by our own functions, not
by optional jsonschema extras, so the result doesn't depend on what is installed.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from consumers.dlq import Rejection

MAX_EVENT_BYTES = 4 * 1024 * 1024
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S*$")


@dataclass(frozen=True)
class ValidEvent:
    event: dict[str, Any]
    run_id: str
    event_type: str


def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time with an explicit offset (Marquez parses it as a ZonedDateTime)."""
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return False
    text = value.upper().replace("Z", "+00:00")
    # fromisoformat takes at most 6 fraction digits: trim nanoseconds for the range check.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str) or not _UUID.match(value):
        return False
    uuid.UUID(value)
    return True


def _is_uri(value: object) -> bool:
    return isinstance(value, str) and bool(_URI.match(value))


@cache
def _validator() -> Draft202012Validator:
    text = resources.files("consumers.lineage").joinpath("runevent.schema.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_is_date_time)
    checker.checks("uuid")(_is_uuid)
    checker.checks("uri")(_is_uri)
    return Draft202012Validator(schema, format_checker=checker)


def _path(parts: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


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
    if not isinstance(event, dict):
        return Rejection("schema", f"$: expected an object, got {type(event).__name__}")
    errors = sorted(_validator().iter_errors(event), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        # `best_match`-style: name the path and the failing keyword for the deepest cause.
        detail = "; ".join(
            f"{_path(e.absolute_path)}: {e.message[:200]}" for e in _leaves(errors)[:5]
        )
        return Rejection("schema", detail or f"{_path(first.absolute_path)}: {first.message}")
    run_id = str(event["run"]["runId"]).lower()
    return ValidEvent(event=event, run_id=run_id, event_type=str(event.get("eventType", "")))


def _leaves(errors: list[Any]) -> list[Any]:
    """Expand `allOf`/`anyOf` wrappers into the concrete errors underneath them."""
    out: list[Any] = []
    for error in errors:
        if error.context:
            out.extend(_leaves(sorted(error.context, key=lambda e: list(e.absolute_path))))
        else:
            out.append(error)
    return out
