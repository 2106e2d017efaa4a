"""Data validated and read by a compact JSON schema generated from the pydantic models
(`schema_compact`), without pydantic: the one walker that the pydantic-free readers
share, `stage_reader` (a stage's config) and `run_reader` (a PipelineRun manifest).

The schema gives the names, types, bounds, patterns, enums, defaults and which unknown
fields a model refuses; each reader adds its models' cross-field rules (`Schema.rules`,
`Schema.field_rules`), the same functions the models apply (`stage_rules`,
`run_rules`). What comes back are plain objects with the models' attribute names and
enums (`View`). The walker is at least as strict as the models: it takes JSON types
as they are (no number given as a string, no boolean as a number), and it refuses a
value that fits more than one branch of a union rather than guess which one pydantic
would choose. Every error names its field (`sink.mode: ...`); all are reported.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lineagehub.api import enums
from lineagehub.api.stage_rules import unique

Loc = tuple[str | int, ...]
#: A rule on a model's `View`, or on one field's value: raises `ValueError` when broken.
Rule = Callable[[Any], object]


class SchemaError(ValueError):
    """The data is not valid: each error with the field it is about."""

    #: What an error about the whole data (no field) is said to be about.
    subject = "data"

    def __init__(self, errors: list[tuple[Loc, str]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(
                f"{'.'.join(str(p) for p in loc) or self.subject}: {msg}" for loc, msg in errors
            )
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


@dataclass(frozen=True)
class Schema:
    """A compact schema's definitions (by model or enum title) and what its reader adds
    to them: a `View` class per model title (plain `View` when not named), a rule per
    model title (on the model's `View`, its error at the model), and a rule per (model
    title, field) (on the field's value when given and not null, its error at the field).

    `from_json`: the data was parsed from JSON text, which the models read in their JSON
    mode (`model_validate_json`: an integer past a double's range is infinity to them);
    else it is Python's objects (a YAML document), which they validate in Python mode
    (`model_validate`: such an integer is refused)."""

    defs: Mapping[str, Any]
    views: Mapping[str, type[View]] = field(default_factory=dict)
    rules: Mapping[str, Rule] = field(default_factory=dict)
    field_rules: Mapping[tuple[str, str], Rule] = field(default_factory=dict)
    from_json: bool = True

    def read(self, data: Any, title: str) -> Any:
        """`data` as the model `title` reads it, or `SchemaError` naming every field in
        error (raise it as a subclass to name the whole data)."""
        walker = _Walker(self)
        try:
            return walker.named(data, title, ())
        except _Invalid:
            raise SchemaError(walker.errors) from None
        except RecursionError:  # nested too deep, or a cycle (YAML's anchors can make one)
            raise SchemaError([((), "nested too deep")]) from None


_NULL = {"type": "null"}
#: A string's constraints: a string under any of them is the models' to decode.
_CONSTRAINED = frozenset({"minLength", "maxLength", "pattern"})
#: An integral float at or past this magnitude is refused, as the models refuse it.
_INT64_BOUND = 2.0**63
#: Unicode's White_Space, what `\s` is to the models' (Rust) regex; Python's `\s` also
#: takes the separators \x1c-\x1f, which would refuse URIs the models accept.
_WHITE_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


class _Invalid(Exception):
    """A value refused (its error is already noted)."""


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """The pattern as the models' (Rust) regex reads it: `$` is the very end, not before a
    last newline, and `\\s` is Unicode's White_Space."""
    pattern = pattern.replace("[^\\s]", f"[^{_WHITE_SPACE}]").replace("\\s", f"[{_WHITE_SPACE}]")
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


def _enum(title: str) -> type[StrEnum] | None:
    found = getattr(enums, title, None)
    return found if isinstance(found, type) and issubclass(found, StrEnum) else None


class _Walker:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
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
            if len(options) == 1:
                return self.value(data, options[0], loc)
            return self.one_of(data, options, loc)
        if "const" in schema:
            if type(data) is not type(schema["const"]) or data != schema["const"]:
                raise self.fail(loc, f"Input should be {schema['const']!r}")
            return data
        if "enum" in schema:
            return self.member(data, schema, None, loc)
        return self.typed(data, schema, loc)

    def typed(self, data: Any, schema: dict[str, Any], loc: Loc) -> Any:
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
            except OverflowError:  # an integer past a double's range
                if not self.schema.from_json:
                    raise self.fail(loc, "Input should be a valid number") from None
                return math.inf if data > 0 else -math.inf
        if kind == "boolean":
            if not isinstance(data, bool):
                raise self.fail(loc, "Input should be a valid boolean")
            return data
        if kind == "null":
            if data is not None:
                raise self.fail(loc, "Input should be None")
            return None
        if kind == "array":
            return self.array(data, schema, loc)
        if kind == "object":
            return self.mapping(data, schema, loc)
        raise self.fail(loc, f"this schema is not one the reader knows: {kind}")

    def named(self, data: Any, title: str, loc: Loc) -> Any:
        schema = self.schema.defs[title]
        if "enum" in schema:
            return self.member(data, schema, _enum(title), loc)
        return self.model(data, schema, title, loc)

    def member(
        self, data: Any, schema: dict[str, Any], kind: type[StrEnum] | None, loc: Loc
    ) -> Any:
        if data not in schema["enum"] or not isinstance(data, str):
            allowed = ", ".join(repr(v) for v in schema["enum"])
            raise self.fail(loc, f"Input should be one of {allowed}")
        return kind(data) if kind is not None else data

    def one_of(self, data: Any, options: list[dict[str, Any]], loc: Loc) -> Any:
        """The value of the one option that takes `data` (an integer or a text, say); none,
        or more than one, is refused (which one the models' union would pick is not the
        walker's to guess)."""
        mark, found, why = len(self.errors), [], []
        for option in options:
            with contextlib.suppress(_Invalid):
                found.append(self.value(data, option, loc))
            why += [message for _, message in self.errors[mark:]]
            del self.errors[mark:]
        if len(found) != 1:
            raise self.fail(loc, " or ".join(why) or "Input fits more than one type")
        return found[0]

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
        if not data.isascii() and _CONSTRAINED & schema.keys():
            # A lone surrogate (which JSON text cannot carry, Python's str can): the models
            # refuse it in a string they check, and take it in one they do not.
            try:
                data.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail(loc, "Input should be a valid string (of Unicode)") from None
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
        items = self.each(enumerate(data), schema.get("items", {}), loc)
        if schema.get("x-kubernetes-list-type") == "set":
            try:
                unique(items)
            except ValueError as exc:
                raise self.fail(loc, f"Value error, {exc}") from None
        return items

    def each(self, pairs: Iterable[tuple[Any, Any]], schema: dict[str, Any], loc: Loc) -> list[Any]:
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
        keys = self.each(((k, k) for k in data), names, loc)
        values = self.each(data.items(), schema.get("additionalProperties", {}), loc)
        return dict(zip(keys, values, strict=True))

    def model(self, data: Any, schema: dict[str, Any], title: str, loc: Loc) -> View:
        if not isinstance(data, dict):
            raise self.fail(loc, "Input should be an object")
        names: dict[str, str] = schema["x-python-names"]
        wire = {name: alias for alias, name in names.items()}
        # Unknown fields: refused (`additionalProperties: false`), else ignored (a model
        # that ignores or keeps them: no reader reads them).
        forbid = schema.get("additionalProperties") is False
        given: dict[str, str] = {}  # field -> the key it was given under
        bad = len(self.errors)
        for key in data:  # the wire name first: given under both, the other is extra
            if key in names:
                given[names[key]] = key
        for key in data:
            if key in names:
                continue
            if not isinstance(key, str):  # (Python's data only: JSON's keys are text)
                self.fail((*loc, key), "Keys should be strings")
            if key in wire and key not in given:
                given[key] = key
            elif forbid:
                self.fail((*loc, key), "Extra inputs are not permitted")
        values: dict[str, Any] = {}
        required = set(schema.get("required", ()))
        for alias, prop in schema["properties"].items():
            name = names[alias]
            if name in given:
                key = given[name]
                raw, where = data[key], (*loc, key)
            elif alias in required:
                self.fail((*loc, alias), "Field required")
                continue
            else:
                raw, where = prop.get("default"), (*loc, alias)
            with contextlib.suppress(_Invalid):
                values[name] = self.value(raw, prop, where)
                check = self.schema.field_rules.get((title, name))
                if check is not None and values[name] is not None:
                    self.rule(check, values[name], where)
        if len(self.errors) > bad:
            raise _Invalid()
        view = self.schema.views.get(title, View)(values)
        if title in self.schema.rules:
            self.rule(self.schema.rules[title], view, loc)
        return view

    def rule(self, check: Rule, value: Any, loc: Loc) -> None:
        try:
            check(value)
        except ValueError as exc:
            raise self.fail(loc, f"Value error, {exc}") from None
