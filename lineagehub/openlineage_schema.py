"""Is this JSON value an OpenLineage event Marquez can store? Pure, no I/O.

Shared by the lineage consumer (what it reads from Kafka) and the gateway (what it
accepts over HTTP), so both doors enforce the same rules. The schema
(`openlineage.schema.json`, beside this module) is our hand-written subset of the
OpenLineage 2-0-2 spec (see its `$comment`). Formats are checked by our own
functions, not by optional jsonschema extras, so the result doesn't depend on what
is installed.

This module imports nothing else of ours, so any component may import it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_FILE = "openlineage.schema.json"
MAX_REPORTED_ERRORS = 5
MAX_MESSAGE_CHARS = 200

_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S*$")


class EventKind(StrEnum):
    """The three top-level OpenLineage event types (spec 2-0-2)."""

    RUN = "RunEvent"
    DATASET = "DatasetEvent"
    JOB = "JobEvent"


@dataclass(frozen=True)
class SchemaError:
    """One failing place in an event: a JSONPath-like `path` and what is wrong there."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


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
def _schema() -> dict[str, Any]:
    text = resources.files("lineagehub").joinpath(SCHEMA_FILE).read_text()
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def _validator(kind: EventKind) -> Draft202012Validator:
    schema = {**_schema(), "$ref": f"#/$defs/{kind.value}"}
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_is_date_time)
    checker.checks("uuid")(_is_uuid)
    checker.checks("uri")(_is_uri)
    return Draft202012Validator(schema, format_checker=checker)


def json_path(parts: Iterable[Any]) -> str:
    """`$.run.facets.parent.run.runId`, `$.inputs[0].name`."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def event_kind(event: dict[str, Any]) -> EventKind:
    """Which event type `event` claims to be, by its top-level keys (as Marquez decides).

    A `run` makes it a RunEvent; otherwise a `dataset` a DatasetEvent; otherwise a
    `job` a JobEvent; anything else is judged as a RunEvent (whose errors then name
    the missing `run`).
    """
    if "run" in event:
        return EventKind.RUN
    if "dataset" in event:
        return EventKind.DATASET
    if "job" in event:
        return EventKind.JOB
    return EventKind.RUN


def _leaves(errors: list[Any]) -> list[Any]:
    """Expand `allOf`/`anyOf` wrappers into the concrete errors underneath them."""
    out: list[Any] = []
    for error in errors:
        if error.context:
            out.extend(_leaves(sorted(error.context, key=lambda e: list(e.absolute_path))))
        else:
            out.append(error)
    return out


def schema_errors(event: object, kind: EventKind = EventKind.RUN) -> list[SchemaError]:
    """What is wrong with `event` as a `kind`, deepest causes first in path order; [] if valid.

    At most `MAX_REPORTED_ERRORS` entries, each message cut to `MAX_MESSAGE_CHARS`.
    """
    if not isinstance(event, dict):
        return [SchemaError("$", f"expected an object, got {type(event).__name__}")]
    errors = sorted(_validator(kind).iter_errors(event), key=lambda e: list(e.absolute_path))
    if not errors:
        return []
    leaves = _leaves(errors)[:MAX_REPORTED_ERRORS]
    if not leaves:
        first = errors[0]
        return [SchemaError(json_path(first.absolute_path), first.message)]
    return [SchemaError(_where(e), e.message[:MAX_MESSAGE_CHARS]) for e in leaves]


def _where(error: Any) -> str:
    """The failing path; for a missing property, the path where it should be."""
    parts = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # jsonschema reports each missing property in its own error: "'name' is a required ..."
        named = [
            p
            for p in error.validator_value
            if p not in error.instance and error.message.startswith(repr(p))
        ]
        if named:
            parts.append(named[0])
    return json_path(parts)


def describe(errors: list[SchemaError]) -> str:
    """One line for logs and DLQ headers: `path: message; path: message`."""
    return "; ".join(str(e) for e in errors)
