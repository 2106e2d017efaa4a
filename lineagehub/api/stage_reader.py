"""A stage's config (`LINEAGEHUB_STAGE_CONFIG`) read and validated without pydantic.

A stage process validates its config before any work, and pydantic alone (its import,
the models' classes and validators) costs it ~75 ms of CPU at start-up. This reader
walks the models' own JSON schema instead (`stage_config.schema.json`, generated from
them: names, types, bounds, patterns, enums, defaults, unknown fields refused) and
applies the models' cross-field rules (`stage_rules`), then hands back plain objects
with the models' attribute names and enums (`View`): what the runner reads.

It is at least as strict as the models: what it accepts, they accept and read the same
(a property test holds it to that). It is stricter in one way only: it takes JSON
types as they are (no number given as a string, no boolean as a number), as the
operator writes them. Every error names its field (`sink.mode: ...`); all are reported.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineagehub.api import enums
from lineagehub.api import stage_rules as rules
from lineagehub.api.enums import STAGE_CONFIG_ENV, StageName

SCHEMA_FILE = Path(__file__).with_name("stage_config.schema.json")
Loc = tuple[str | int, ...]


class StageConfigError(ValueError):
    """The config is not valid: each error with the field it is about."""

    def __init__(self, errors: list[tuple[Loc, str]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{'.'.join(str(p) for p in loc) or 'config'}: {msg}" for loc, msg in errors)
        )


class View:
    """One model's fields as attributes (`source.uri`, `transform.drop_nulls`)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    if TYPE_CHECKING:  # the fields are the schema's, known when read

        def __getattr__(self, name: str) -> Any: ...

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({fields})"


class StageConfigView(View):
    workspace: str

    def intermediate_path(self, stage: StageName) -> str:
        return rules.intermediate_path(self.workspace, stage)


class QualityCheckView(View):
    name: str | None
    type: enums.CheckType
    column: str

    @property
    def display_name(self) -> str:
        return rules.display_name(self.name, self.type, self.column)


_VIEWS: dict[str, type[View]] = {"StageConfig": StageConfigView, "QualityCheck": QualityCheckView}
_RULES: dict[str, Callable[[Any], None]] = {
    "SourceSpec": lambda v: rules.check_s3_only(v.uri, v.s3),
    "SinkSpec": lambda v: rules.check_sink(v.uri, v.format, v.s3),
    "QualityCheck": lambda v: rules.check_quality(v.type, v.min, v.max, v.values, v.pattern),
    "TransformSpec": lambda v: rules.check_transform(
        list(v.rename.values()) if v.rename else None,
        [d.name for d in v.derived] if v.derived else None,
    ),
}
_NULL = {"type": "null"}
#: An integral float at or past this magnitude is refused, as the models refuse it.
_INT64_BOUND = 2.0**63


class _Invalid(Exception):
    """A value refused (its error is already noted)."""


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


#: Unicode's White_Space, what `\s` is to the models' (Rust) regex; Python's `\s` also
#: takes the separators \x1c-\x1f, which would refuse URIs the models accept.
_WHITE_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """The pattern as the models' (Rust) regex reads it: `$` is the very end, not before a
    last newline, and `\\s` is Unicode's White_Space."""
    pattern = pattern.replace("[^\\s]", f"[^{_WHITE_SPACE}]").replace("\\s", f"[{_WHITE_SPACE}]")
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


def _enum(title: str) -> type[StrEnum] | None:
    found = getattr(enums, title, None)
    return found if isinstance(found, type) and issubclass(found, StrEnum) else None


class _Reader:
    def __init__(self) -> None:
        self.defs: dict[str, Any] = _schema()["$defs"]
        self.errors: list[tuple[Loc, str]] = []

    def fail(self, loc: Loc, message: str) -> _Invalid:
        self.errors.append((loc, message))
        return _Invalid()

    def value(self, data: Any, schema: dict[str, Any], loc: Loc) -> Any:
        if "$ref" in schema:
            title = schema["$ref"].rsplit("/", 1)[-1]
            return self.named(data, title, loc)
        if "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s != _NULL]
            if data is None and len(options) < len(schema["anyOf"]):
                return None
            if len(options) != 1:
                raise self.fail(loc, "this schema is not one the reader knows")  # generated
            return self.value(data, options[0], loc)
        kind = schema.get("type")
        if kind == "string":
            return self.string(data, schema, loc)
        if kind == "integer":
            return self.integer(data, schema, loc)
        if kind == "number":
            if isinstance(data, bool) or not isinstance(data, int | float):
                raise self.fail(loc, "Input should be a valid number")
            try:
                return float(data)
            except OverflowError:  # an integer past a double's range: the models read inf
                return math.inf if data > 0 else -math.inf
        if kind == "array":
            return self.array(data, schema, loc)
        if kind == "object":
            return self.mapping(data, schema, loc)
        raise self.fail(loc, f"this schema is not one the reader knows: {kind}")

    def named(self, data: Any, title: str, loc: Loc) -> Any:
        schema = self.defs[title]
        if "enum" in schema:
            if data not in schema["enum"] or not isinstance(data, str):
                allowed = ", ".join(repr(v) for v in schema["enum"])
                raise self.fail(loc, f"Input should be one of {allowed}")
            kind = _enum(title)
            return kind(data) if kind is not None else data
        return self.model(data, schema, title, loc)

    def size(
        self,
        size: int,
        schema: dict[str, Any],
        keys: tuple[str, str],
        what: str,
        unit: str,
        loc: Loc,
    ) -> None:
        low, high = schema.get(keys[0]), schema.get(keys[1])
        if low is not None and size < low:
            raise self.fail(loc, f"{what} should have at least {low} {unit}")
        if high is not None and size > high:
            raise self.fail(loc, f"{what} should have at most {high} {unit}")

    def string(self, data: Any, schema: dict[str, Any], loc: Loc) -> str:
        if not isinstance(data, str):
            raise self.fail(loc, "Input should be a valid string")
        self.size(len(data), schema, ("minLength", "maxLength"), "String", "characters", loc)
        if "pattern" in schema and not _pattern(schema["pattern"]).search(data):
            raise self.fail(loc, f"String should match pattern '{schema['pattern']}'")
        return data

    def integer(self, data: Any, schema: dict[str, Any], loc: Loc) -> int:
        if isinstance(data, float) and data.is_integer():
            # The models take an integral float only within a signed 64-bit integer.
            if not -_INT64_BOUND < data < _INT64_BOUND:
                raise self.fail(
                    loc, "Unable to parse input string as an integer, exceeded maximum size"
                )
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            raise self.fail(loc, "Input should be a valid integer")
        if "minimum" in schema and data < schema["minimum"]:
            raise self.fail(loc, f"Input should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and data > schema["maximum"]:
            raise self.fail(loc, f"Input should be less than or equal to {schema['maximum']}")
        return data

    def array(self, data: Any, schema: dict[str, Any], loc: Loc) -> list[Any]:
        if not isinstance(data, list):
            raise self.fail(loc, "Input should be a valid list")
        self.size(len(data), schema, ("minItems", "maxItems"), "List", "items", loc)
        items = self.each(((i, item) for i, item in enumerate(data)), schema.get("items", {}), loc)
        if schema.get("x-kubernetes-list-type") == "set":
            try:
                rules.unique(items)
            except ValueError as exc:
                raise self.fail(loc, f"Value error, {exc}") from None
        return items

    def each(self, pairs: Any, schema: dict[str, Any], loc: Loc) -> list[Any]:
        out, bad = [], False
        for key, item in pairs:
            try:
                out.append(self.value(item, schema, (*loc, key)))
            except _Invalid:
                bad = True
        if bad:
            raise _Invalid()
        return out

    def mapping(self, data: Any, schema: dict[str, Any], loc: Loc) -> dict[str, Any]:
        """A map (`rename`, `cast`): its keys and its values checked."""
        if not isinstance(data, dict):
            raise self.fail(loc, "Input should be a valid dictionary")
        self.size(len(data), schema, ("minProperties", "maxProperties"), "Dictionary", "items", loc)
        names = {"type": "string", **schema.get("propertyNames", {})}
        keys = self.each(((k, k) for k in data), names, (*loc,))
        values = self.each(data.items(), schema.get("additionalProperties", {}), loc)
        return dict(zip(keys, values, strict=True))

    def model(self, data: Any, schema: dict[str, Any], title: str, loc: Loc) -> View:
        if not isinstance(data, dict):
            raise self.fail(loc, "Input should be an object")
        names: dict[str, str] = schema["x-python-names"]
        wire = {name: alias for alias, name in names.items()}
        given: dict[str, str] = {}  # field -> the key it was given under
        bad = len(self.errors)
        for key in data:  # the wire name first: given under both, the other is extra
            if key in names:
                given[names[key]] = key
        for key in data:
            if key not in names and (key not in wire or key in given):
                self.fail((*loc, key), "Extra inputs are not permitted")
            elif key not in names:
                given[key] = key
        values: dict[str, Any] = {}
        required = set(schema.get("required", ()))
        for alias, prop in schema["properties"].items():
            field = names[alias]
            if field in given:
                key = given[field]
                raw, where = data[key], (*loc, key)
            elif alias in required:
                self.fail((*loc, alias), "Field required")
                continue
            else:
                raw, where = prop.get("default"), (*loc, alias)
            with contextlib.suppress(_Invalid):
                values[field] = self.value(raw, prop, where)
        if len(self.errors) > bad:
            raise _Invalid()
        view = _VIEWS.get(title, View)(values)
        if title in _RULES:
            try:
                _RULES[title](view)
            except ValueError as exc:
                raise self.fail(loc, f"Value error, {exc}") from None
        return view


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_stage_config(raw: str) -> StageConfigView:
    """The config in `raw` (JSON), or `StageConfigError` naming every field in error."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
        # A lone surrogate (`"\\ud800"`) is invalid JSON to the models' parser.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise StageConfigError([((), "Invalid JSON: a lone surrogate in a string")]) from None
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise StageConfigError([((), f"Invalid JSON: {exc}")]) from None
    reader = _Reader()
    try:
        view = reader.named(data, "StageConfig", ())
    except _Invalid:
        raise StageConfigError(reader.errors) from None
    assert isinstance(view, StageConfigView)
    return view


def stage_config_from_env(environ: dict[str, str]) -> StageConfigView:
    raw = environ.get(STAGE_CONFIG_ENV)
    if not raw:
        raise ValueError(f"{STAGE_CONFIG_ENV} is not set")
    return read_stage_config(raw)
