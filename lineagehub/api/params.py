"""Pipeline parameters: a Pipeline declares them, a run fills them in, and every text
of the Pipeline's spec names them as `$(params.NAME)` (the Tekton syntax: no spaces, so
a parameterised URI still matches the URI patterns).

Pure functions over plain JSON values; the models are in `lineagehub.api.pipeline`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

#: A reference to a parameter; the group is whatever stands between the dot and `)`.
PARAM_REF = re.compile(r"\$\(params\.([^)]*)\)")


class ParamType(StrEnum):
    """What a parameter's value must look like (values are always written as text)."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


#: The whole value, for the types a pattern decides (RE2 and Python `re` alike). One
#: definition: the API server checks a Pipeline's defaults with it, `type_problem` a run's.
VALUE_PATTERNS: dict[ParamType, str] = {
    ParamType.INTEGER: r"[+-]?[0-9]+",
    ParamType.NUMBER: r"[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?",
    ParamType.DATE: r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
}
_VALUE_RES = {kind: re.compile(pattern) for kind, pattern in VALUE_PATTERNS.items()}

#: CEL, for the API server: the same checks as `type_problem`, on `self.default`.
CEL_VALUE_MATCHES: dict[ParamType, str] = {
    ParamType.INTEGER: f"self.default.matches('^{VALUE_PATTERNS[ParamType.INTEGER]}$')",
    ParamType.NUMBER: f"self.default.matches('^{VALUE_PATTERNS[ParamType.NUMBER]}$')",
    ParamType.BOOLEAN: "self.default in ['true', 'false']",
    ParamType.DATE: f"self.default.matches('^{VALUE_PATTERNS[ParamType.DATE]}$')",
}


def _whole(kind: ParamType, value: str) -> bool:
    """`value`, all of it (no trailing newline, no spaces), has `kind`'s pattern."""
    return _VALUE_RES[kind].fullmatch(value) is not None


class ParamError(ValueError):
    """A run's params do not fit its Pipeline; `field` is the path to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def type_problem(kind: ParamType, value: str) -> str | None:
    """Why `value` is not a `kind`, or None when it is."""
    if kind is ParamType.INTEGER and not _whole(kind, value):
        return "an integer such as 7"
    if kind is ParamType.NUMBER:
        if not _whole(kind, value):
            return "a number such as 2.5"
        if not math.isfinite(float(value)):
            return "a finite number such as 2.5"
    if kind is ParamType.BOOLEAN and value not in ("true", "false"):
        return "true or false"
    if kind is ParamType.DATE:
        try:
            if not _whole(kind, value):
                raise ValueError(value)
            date.fromisoformat(value)
        except ValueError:
            return "a date written YYYY-MM-DD"
    return None


#: What a scheduled run knows of itself, as `$(context.NAME)` in a Pipeline's
#: `scheduleParams`: its due time (RFC 3339, UTC) and that time's date in the
#: schedule's time zone.
CONTEXT_NAMES = ("scheduledTime", "scheduledDate")
CONTEXT_REF = re.compile(r"\$\(context\.([^)]*)\)")
#: A whole `scheduleParams` value: a `$(` only as a context reference. One definition,
#: RE2 and Python `re` alike: the API server and `context_problem` refuse the same values.
SCHEDULE_VALUE_PATTERN = (
    r"([^$]|[$]+([^($]|$)|[$]+[(]context[.](" + "|".join(CONTEXT_NAMES) + r")[)])*"
)
_SCHEDULE_VALUE_RE = re.compile(SCHEDULE_VALUE_PATTERN)
_ANY_REF = re.compile(r"\$\(([^)]*)\)")


def context_problem(value: str) -> str | None:
    """Why `value` cannot be a `scheduleParams` value, or None when it can."""
    if _SCHEDULE_VALUE_RE.fullmatch(value) is not None:
        return None
    known = [f"$(context.{name})" for name in CONTEXT_NAMES]
    unknown = [m.group(0) for m in _ANY_REF.finditer(value) if m.group(0) not in known]
    what = f"{unknown[0]} is not a context reference" if unknown else "it has an unclosed $("
    return f"{what}: a value may use only {' or '.join(known)}"


def schedule_context(due: datetime, zone: str | None) -> dict[str, str]:
    """The context of a run scheduled for `due`: `scheduledTime` in UTC, and
    `scheduledDate`, the date of `due` in `zone` (UTC when None)."""
    tz = ZoneInfo(zone) if zone else UTC
    return {
        "scheduledTime": due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scheduledDate": due.astimezone(tz).date().isoformat(),
    }


def fill_context(value: str, context: Mapping[str, str]) -> str:
    """`value` with every `$(context.NAME)` replaced (names checked by `context_problem`)."""
    return CONTEXT_REF.sub(lambda m: context[m.group(1)], value)


def references(value: Any, path: str = "spec") -> Iterator[tuple[str, str]]:
    """(field path, parameter name) for every `$(params.NAME)` in the texts of `value`."""
    if isinstance(value, str):
        for match in PARAM_REF.finditer(value):
            yield path, match.group(1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, f"{path}[{index}]")


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """`value` with every `$(params.NAME)` replaced by `values[NAME]` (names all known)."""
    if isinstance(value, str):
        return PARAM_REF.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, dict):
        return {key: substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, values) for item in value]
    return value
