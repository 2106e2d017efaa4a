"""Would Marquez store this OpenLineage event? Pure, no I/O.

Shared by the lineage consumer (what it reads from Kafka) and the gateway (what it
accepts over HTTP), so both doors enforce the same rules. The rules are Marquez's
(0.50+, `POST /api/v1/lineage`), not the letter of the OpenLineage spec: an event
Marquez stores must never be refused here, and what is refused is what Marquez
refuses (HTTP 400/422) or fails on (HTTP 500), each with its JSON path and a fix.

* `openlineage.schema.json` (beside this module) holds the shape: required fields,
  JSON types, the facets Marquez reads into typed classes. Its two formats are
  implemented here: `marquez-date-time` (Marquez's FlexibleDateTimeDeserializer) and
  `java-uri` (what `java.net.URI` parses).
* `event_kind` picks RunEvent / DatasetEvent / JobEvent the way Marquez does: by the
  end of `schemaURL` (Marquez's EventTypeResolver), RunEvent otherwise.
* `_name_errors` adds Marquez's namespace and name rules (NamespaceName, DatasetName,
  JobName), which apply to some datasets depending on the event type.
* `loads` parses bytes with the limits of Marquez's JSON parser (Jackson 2.15+:
  numbers of at most 1000 digits, no NaN/Infinity), and never raises.

This module imports nothing else of ours, so any component may import it.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_FILE = "openlineage.schema.json"
MAX_REPORTED_ERRORS = 5
MAX_MESSAGE_CHARS = 300
# Events with more JSON values than this get only the first error (see schema_errors).
SLOW_PATH_MAX_VALUES = 5000

# Jackson's StreamReadConstraints defaults (2.15+), which Marquez's Dropwizard uses.
MAX_NUMBER_DIGITS = 1000
# PostgreSQL's timestamp range, the years Marquez can store an event time in.
MIN_YEAR, MAX_YEAR = -4712, 294276

_TERMINAL_EVENT_TYPES = frozenset({"complete", "fail", "abort"})
_JAVA_BLANK = "".join(chr(c) for c in range(0x21))  # what Java's String.trim() strips


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


# ---- event time: Marquez's FlexibleDateTimeDeserializer ------------------------------------

# ISO_LOCAL_DATE_TIME (seconds and fraction optional, `T` in any case), then an optional
# offset `Z`, `+HH`, `+HH:MM` or `+HH:MM:SS`. Years: 4 digits, or a sign and up to 10.
_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4}|\+[0-9]{5,10}|-[0-9]{4,10})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"[Tt](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{0,9}))?)?"
    r"(?P<offset>[Zz]|[+-](?P<oh>[0-9]{2})(?::(?P<om>[0-9]{2})(?::(?P<os>[0-9]{2}))?)?)?",
    re.ASCII,
)
_TIME_FIX = "write it like 2025-01-02T03:04:05.123Z or 2025-01-02T03:04:05+02:00"


def date_time_problem(value: str) -> str | None:
    """Why Marquez cannot read `value` as an event time, or None if it can.

    Marquez trims the text, parses it with ISO_LOCAL_DATE_TIME plus an optional
    offset (no offset: the server's zone), and resolves it in SMART mode: a day past
    the month's end is clamped (02-30 is read as 02-28) and 24:00 is the next midnight.
    """
    text = value.strip(_JAVA_BLANK)
    if not text:
        return "is empty, which Marquez reads as null: send an ISO-8601 date-time"
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return f"{_short(value)} is not an ISO-8601 date-time Marquez can read: {_TIME_FIX}"
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    hour, minute = int(match["hour"]), int(match["minute"])
    second = int(match["second"] or 0)
    fraction = match["fraction"] or ""
    if match["year"] == "-0000":
        return "year -0000 is not a year: use 0000"
    if not MIN_YEAR <= year <= MAX_YEAR:
        return f"year {year} is outside what Marquez's PostgreSQL stores (4713 BC to 294276 AD)"
    if not 1 <= month <= 12:
        return f"month {match['month']} is not 01-12"
    if not 1 <= day <= 31:
        return f"day {match['day']} is not 01-31"
    end_of_day = hour == 24 and minute == 0 and second == 0 and not fraction.strip("0")
    if hour > 23 and not end_of_day:
        return f"hour {match['hour']} is not 00-23 (24:00 alone means the next midnight)"
    if minute > 59 or second > 59:
        return "minutes and seconds must be 00-59"
    if match["oh"] is not None:
        oh, om, os_ = int(match["oh"]), int(match["om"] or 0), int(match["os"] or 0)
        if oh > 23 or om > 59 or os_ > 59 or oh * 3600 + om * 60 + os_ > 18 * 3600:
            return f"offset {match['offset']} is outside -18:00..+18:00"
    return None


# ---- URIs: what java.net.URI parses ---------------------------------------------------------

# Never allowed unescaped: controls, space and Unicode spaces, and "<>\^`{|}.
_URI_ILLEGAL = re.compile(
    '[\x00-\x20\x7f-\x9f"<>\\\\^`{|}\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]'
)
_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile("[A-Za-z][A-Za-z0-9+.-]*", re.ASCII)
_URI_DELIMS = re.compile("[:/?#]")


@lru_cache(maxsize=4096)
def uri_problem(value: str) -> str | None:
    """Why `java.net.URI` (so Marquez) would refuse `value`, or None if it parses.

    Covers what that parser always refuses: illegal characters, a `%` that is not an
    escape, a second `#`, a malformed scheme, an empty scheme-specific part or
    authority, and brackets in a path. Anything subtler is let through.
    """
    text = value.strip(_JAVA_BLANK)  # Jackson trims before parsing
    bad = _URI_ILLEGAL.search(text)
    if bad:
        return f"{bad.group()!r} at index {bad.start()} is not allowed in a URI: percent-encode it"
    bad = _BAD_ESCAPE.search(text)
    if bad:
        return f"'%' at index {bad.start()} is not followed by two hex digits: write it as %25"
    if text.count("#") > 1:
        return f"a second '#' at index {text.index('#', text.index('#') + 1)}: encode it as %23"
    rest = text
    delim = _URI_DELIMS.search(text)
    if delim and delim.group() == ":":
        scheme, rest = text[: delim.start()], text[delim.end() :]
        if not _SCHEME.fullmatch(scheme):
            return f"{_short(scheme)} is not a URI scheme (a letter, then letters, digits, + - .)"
        if not rest:
            return f"nothing follows the scheme '{scheme}:'"
        if not rest.startswith("/"):
            return None  # opaque, like urn:x or mailto:a@b: brackets are fine there
    path = re.split("[?#]", rest, maxsplit=1)[0]
    if path.startswith("//"):
        authority_end = path.find("/", 2)
        if authority_end < 0 and len(path) == 2 and len(rest) == 2:
            return "'//' is not followed by an authority"
        path = path[authority_end:] if authority_end >= 0 else ""
    for bracket in "[]":
        if bracket in path:
            return f"{bracket!r} is not allowed in a URI path: encode it as {_PCT[bracket]}"
    return None


_PCT = {"[": "%5B", "]": "%5D"}


# ---- parsing bytes the way Marquez's Jackson does -------------------------------------------


class _JsonLimit(ValueError):
    pass


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_NUMBER_DIGITS:
        raise _JsonLimit(
            f"a number has {digits} digits; Marquez's JSON parser refuses more than "
            f"{MAX_NUMBER_DIGITS}: send it as a string"
        )
    return int(text)


def _parse_float(text: str) -> float:
    digits = sum(c.isdigit() for c in text)
    if digits > MAX_NUMBER_DIGITS:
        raise _JsonLimit(
            f"a number has {digits} digits; Marquez's JSON parser refuses more than "
            f"{MAX_NUMBER_DIGITS}: send it as a string"
        )
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _JsonLimit(f"{_short(text)} is too large for a 64-bit float: send it as a string")
    return value


def _no_constant(name: str) -> Any:
    raise _JsonLimit(f"{name} is not valid JSON (Marquez refuses it): send null or a string")


# A run of 19 digits may be an integer beyond 64 bits, which orjson would turn into a
# float (losing digits), or a number longer than Marquez reads: such texts take the
# exact parser (a digit run inside a string just takes the slower path). Found by
# mapping every digit to 0 and searching for 19 zeros: C-speed, where a regular
# expression costs several times the parse itself. The same copy maps `[` to `{`, so
# one count of `{` in it is `_brackets` of the text (one pass over it, not two).
_SCAN = bytes.maketrans(b"123456789[", b"000000000{")
_LONG_DIGITS = b"0" * 19

#: Jackson's default `maxNestingDepth` (2.15+), which Marquez's parser keeps: an event
#: nested deeper is refused there, so it is refused here too, whichever parser read it.
MAX_NESTING = 1000
_TOO_DEEP = (
    f"nesting too deep: more than {MAX_NESTING} levels of objects and arrays (Marquez's "
    "JSON parser refuses it): flatten the facet"
)
#: The shortest JSON text nesting deeper than MAX_NESTING: an opener and a closer a
#: level. A shorter text orjson reads needs no bracket count (most single events).
SHORTEST_TOO_DEEP = 2 * (MAX_NESTING + 1)


_RECURSION_LOCK = threading.Lock()


@contextmanager
def room_for_nesting() -> Iterator[None]:
    """Recursion room for `json` to read MAX_NESTING levels wherever it is called from
    (the interpreter's default limit, 1000, counts the caller's frames too, so `json`
    alone would refuse from ~990 levels, where Marquez reads 1000)."""
    with _RECURSION_LOCK:
        before = sys.getrecursionlimit()
        sys.setrecursionlimit(max(before, MAX_NESTING + 1000))
        try:
            yield
        finally:
            sys.setrecursionlimit(before)


def _deeper_than_limit(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels (a loop, not
    recursion: the value may be as deep as orjson's 1024)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _children_deeper_than_limit(value: dict[str, Any] | list[Any]) -> bool:
    """`_deeper_than_limit(value)`, walking only the children that could be too deep.

    A batch of events has more than MAX_NESTING brackets in all while each event holds a
    few dozen: a child re-encoded (orjson, C speed) with fewer brackets than the levels
    left cannot reach the limit, so the Python walk is taken only for one that could."""
    children = value.values() if isinstance(value, dict) else value
    for child in children:
        if not isinstance(child, dict | list):
            continue
        try:
            opened = _brackets(orjson.dumps(child))
        except orjson.JSONEncodeError:  # nested over orjson's 254 levels: walk it
            opened = MAX_NESTING
        if opened > MAX_NESTING - 1 and _deeper_than_limit(child, MAX_NESTING - 1):
            return True
    return False


def _brackets(text: bytes | str) -> int:
    """How many objects and arrays `text` opens at most (brackets in strings count too)."""
    if isinstance(text, bytes):
        return text.count(b"{") + text.count(b"[")
    return text.count("{") + text.count("[")


#: The deepest nesting orjson encodes (it refuses more): far below MAX_NESTING, so a
#: value it encodes cannot be too deep (tests/unit/test_openlineage_nesting.py holds it).
ORJSON_MAX_DEPTH = 254


def _encodes_shallow(value: Any) -> bool:
    """True when orjson encodes `value` (a C pass, ~1.5 us an event): it is then at most
    ORJSON_MAX_DEPTH levels deep. False says nothing (deeper, or an integer beyond 64
    bits from the exact parser)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def _nesting_checked(value: Any, opened: int) -> tuple[Any, str | None]:
    """`(value, None)`, or the refusal when it nests deeper than Marquez reads. `opened`
    is `_brackets` of its text: only a text with more than MAX_NESTING brackets can be
    too deep (a batch of ~20 events or more): it is first encoded whole, which settles
    any value within orjson's depth in one C pass; the child-by-child walk is left for
    the rest."""
    if not isinstance(value, (dict, list)):  # a tuple: ~10x cheaper than a union
        return value, None
    deep = opened > MAX_NESTING and not _encodes_shallow(value)
    if deep and _children_deeper_than_limit(value):
        return None, _TOO_DEEP
    return value, None


def loads(data: bytes | str) -> tuple[Any, str | None]:
    """`(value, None)`, or `(None, reason)` when Marquez could not parse `data` as JSON.

    Never raises: NaN/Infinity, numbers longer than Jackson's 1000 digits (Python
    itself raises on 4300), invalid UTF-8, and nesting deeper than Jackson's 1000
    levels (MAX_NESTING) are reasons.

    orjson (3 times faster) parses what it reads exactly as the exact parser below
    would: the same doubles, the last duplicate key wins. Whatever it refuses (NaN,
    Infinity, invalid UTF-8, lone surrogates, nesting over 1024, a UTF-8 BOM) and any
    text with a 19-digit run goes to the exact parser, which gives the reason (or, for
    lone surrogates and big integers, the value).
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    scanned = raw.translate(_SCAN)
    if _LONG_DIGITS not in scanned:  # `orjson_reads_exactly`; `scanned` counts nesting too
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            opened = scanned.count(b"{") if len(raw) >= SHORTEST_TOO_DEEP else 0
            return _nesting_checked(value, opened)
    return loads_exact(data)


def orjson_reads_exactly(raw: bytes) -> bool:
    """Whether orjson reads every number in `raw` as the exact parser does, as far as a
    scan tells: no run of 19 digits. orjson (3.13) reads an integer past 64 bits as a
    float, where Jackson and Python keep every digit."""
    return _LONG_DIGITS not in raw.translate(_SCAN)


def loads_exact(data: bytes | str) -> tuple[Any, str | None]:
    """`loads` with Python's parser alone: the reference the fast path is held to."""
    deep = _brackets(data) > MAX_NESTING - 50
    try:
        with room_for_nesting() if deep else contextlib.nullcontext():
            value = json.loads(
                data,
                parse_int=_parse_int,
                parse_float=_parse_float,
                parse_constant=_no_constant,
            )
    except _JsonLimit as exc:
        return None, str(exc)
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8: {exc.reason} at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:  # far past MAX_NESTING: refused without reading the rest
        return None, _TOO_DEEP
    except ValueError as exc:  # anything else the decoder refuses (never raise)
        return None, f"not JSON: {str(exc)[:100]}"
    return _nesting_checked(value, _brackets(data))


# ---- the schema -------------------------------------------------------------------------------


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("lineagehub").joinpath(SCHEMA_FILE).read_text()
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


def _kind_schema(kind: EventKind) -> dict[str, Any]:
    return {**_schema(), "$ref": f"#/$defs/{kind.value}"}


def _date_time_or_empty_problem(value: str) -> str | None:
    return date_time_problem(value) if value.strip(_JAVA_BLANK) else None


# The schema's own formats: each returns why a string fails it, or None. Formats only
# apply to strings (numbers and booleans are judged by the other keywords).
_FORMATS: dict[str, Callable[[str], str | None]] = {
    "marquez-date-time": date_time_problem,
    "marquez-date-time-or-empty": _date_time_or_empty_problem,
    "java-uri": uri_problem,
}


def _raising(problem: Callable[[str], str | None]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        reason = problem(value) if isinstance(value, str) else None
        if reason:
            raise ValueError(reason)
        return True

    return check


# For each format, a regular expression that only matches strings the format accepts
# (tests/unit/test_openlineage_fuzz.py checks that it never accepts more): the
# compiled validator tries it in Rust first and calls the Python check above only for
# the strings it does not match, the rare ones. The everyday shapes: an RFC 3339 time
# with a 4-digit year, and an absolute URI of unreserved characters.
_TIME_FAST = (
    "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]"
    "(:[0-5][0-9](\\.[0-9]{0,9})?)?([Zz]|[+-](0[0-9]|1[0-7])(:[0-5][0-9])?|[+-]18(:00)?)?"
)
_URI_CHARS = "[A-Za-z0-9._~!$&'()*+,;=:@/?-]"
_URI_FAST = (  # a scheme, then anything but nothing or "//" alone; at most one '#'
    f"[A-Za-z][A-Za-z0-9+.-]*:(//{_URI_CHARS}+|/?[A-Za-z0-9._~!$&'()*+,;=:@?-]{_URI_CHARS}*|/)"
    f"(#{_URI_CHARS}*)?"
)
FAST_ACCEPT: dict[str, str] = {
    "marquez-date-time": _TIME_FAST,
    "marquez-date-time-or-empty": _TIME_FAST,
    "java-uri": _URI_FAST,
}


def _passing(problem: Callable[[str], str | None]) -> Callable[[str], bool]:
    return lambda value: problem(value) is None


@cache
def _validator(kind: EventKind) -> Draft202012Validator:
    """The slow validator that lists every error, for events the fast one refused."""
    checker = FormatChecker(formats=())
    for name, problem in _FORMATS.items():
        checker.checks(name, raises=ValueError)(_raising(problem))
    return Draft202012Validator(_kind_schema(kind), format_checker=checker)


def _with_fast_accept(node: Any) -> Any:
    """`node` with each `"format": F` of ours turned into `anyOf: [pattern, format]`."""
    if isinstance(node, list):
        return [_with_fast_accept(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _with_fast_accept(value) for key, value in node.items()}
    name = out.get("format")
    if isinstance(name, str) and name in FAST_ACCEPT:
        del out["format"]
        either = {"anyOf": [{"pattern": f"^(?:{FAST_ACCEPT[name]})$"}, {"format": name}]}
        out["allOf"] = [*out.get("allOf", []), either]
    return out


def _compiled(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    formats = {name: _passing(problem) for name, problem in _FORMATS.items()}
    return jsonschema_rs.Draft202012Validator(schema, formats=formats, validate_formats=True)


@cache
def _fast_validator(kind: EventKind) -> jsonschema_rs.Validator:
    """The schema compiled once by jsonschema-rs (Rust), the formats' everyday shapes
    matched in Rust too: a few microseconds an event, where fastjsonschema's generated
    Python took about 100 and jsonschema about 1,000. It only says valid or not."""
    return _compiled(_with_fast_accept(_kind_schema(kind)))


@cache
def _first_error_validator(kind: EventKind) -> jsonschema_rs.Validator:
    """The same schema as written (formats as themselves), for the first error of a
    refused event too big for the slow validator."""
    return _compiled(_kind_schema(kind))


@dataclass(frozen=True)
class _FastError:
    """jsonschema-rs's first error, in the shape of a jsonschema error for `_explain`."""

    absolute_path: list[Any]
    validator: str
    validator_value: Any
    instance: Any
    message: str
    cause: Exception | None
    context: tuple[()] = ()


def _fast_error(event: dict[str, Any], kind: EventKind) -> _FastError | None:
    """None when the fast validator passes `event`, else its first error (an error with
    no `validator` when the compiled validator could not read the event, such as a
    lone surrogate, which is not Unicode: the slow path judges then)."""
    try:
        if _fast_validator(kind).is_valid(event):
            return None
        first = next(iter(_first_error_validator(kind).iter_errors(event)), None)
    except Exception as exc:
        return _FastError([], "", None, None, f"{type(exc).__name__}: {exc}", None)
    if first is None:  # cannot be: both compile the same rules; let the slow path judge
        return _FastError([], "", None, None, "the two compiled validators disagree", None)
    return _from_fast(first)


def _from_fast(error: jsonschema_rs.ValidationError) -> _FastError:
    keyword = str(error.kind.name)
    value: Any = error.kind.value
    if keyword == "required":
        value = [value]
    cause = None
    if keyword == "format" and isinstance(error.instance, str):
        problem_of = _FORMATS.get(str(value))
        problem = problem_of(error.instance) if problem_of else None
        cause = ValueError(problem) if problem else None
    message = repr(value[0]) if keyword == "required" else str(error.message)
    return _FastError(list(error.instance_path), keyword, value, error.instance, message, cause)


def _node_count_over(value: object, limit: int) -> bool:
    """Does `value` hold more than `limit` JSON values? Stops counting at the limit."""
    count = 0
    stack: list[object] = [value]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def json_path(parts: Iterable[Any]) -> str:
    """`$.run.facets.parent.run.runId`, `$.inputs[0].name`, `$.run.facets["spark.plan"]`."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.fullmatch(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


def event_kind(event: dict[str, Any]) -> EventKind:
    """Which event type Marquez reads `event` as.

    Marquez decides by `schemaURL` alone (its EventTypeResolver): the part from the
    last `/` on, so `.../OpenLineage.json#/$defs/DatasetEvent` (or `#/definitions/...`)
    is a DatasetEvent, `.../JobEvent` a JobEvent; anything else, or no schemaURL, is a
    RunEvent. A DatasetEvent without such a schemaURL is therefore judged as a
    RunEvent, and its errors name the missing `run` and `job`.
    """
    url = event.get("schemaURL") if isinstance(event, dict) else None
    if isinstance(url, str) and "/" in url:
        suffix = url[url.rindex("/") :]
        if suffix == "/DatasetEvent":
            return EventKind.DATASET
        if suffix == "/JobEvent":
            return EventKind.JOB
    return EventKind.RUN


def record_key(event: dict[str, Any], kind: EventKind) -> str:
    """The Kafka key of a valid event: the run id in lower case (what the runner and the
    consumer use, so one run stays in order) for a RunEvent; `dataset:<ns>/<name>` or
    `job:<ns>/<name>` for static lineage events."""
    if kind is EventKind.RUN:
        return _text(event["run"]["runId"]).lower()
    if kind is EventKind.DATASET:
        dataset = event["dataset"]
        return f"dataset:{_text(dataset['namespace'])}/{_text(dataset['name'])}"
    job = event["job"]
    return f"job:{_text(job['namespace'])}/{_text(job['name'])}"


def schema_errors(event: object, kind: EventKind = EventKind.RUN) -> list[SchemaError]:
    """What Marquez would refuse in `event` read as a `kind`, in path order; [] if nothing.

    At most `MAX_REPORTED_ERRORS` entries, each message cut to `MAX_MESSAGE_CHARS`.
    """
    if not isinstance(event, dict):
        return [SchemaError("$", f"expected an object, got {_type(event)}")]
    found: list[tuple[list[Any], str]] = []
    fast = _fast_error(event, kind)
    if fast is not None:
        # jsonschema lists every error but takes about 20 µs a value: only for events
        # small enough; a big one gets the fast validator's first error.
        if not fast.validator or not _node_count_over(event, SLOW_PATH_MAX_VALUES):
            for error in _leaves(_validator(kind).iter_errors(event)):
                found.append(_explain(error, event, kind))
                if len(found) >= 4 * MAX_REPORTED_ERRORS:
                    break
        if not found and fast.validator:
            found.append(_explain(fast, event, kind))
    found.extend(_name_errors(event, kind))
    if not found:  # the everyday case: nothing to sort, cut or deduplicate
        return []
    found.sort(key=lambda item: _path_key(item[0]))
    out: list[SchemaError] = []
    seen: set[tuple[str, str]] = set()
    for parts, message in found:
        error = SchemaError(json_path(parts), message[:MAX_MESSAGE_CHARS])
        if (error.path, error.message) not in seen:
            seen.add((error.path, error.message))
            out.append(error)
    return out[:MAX_REPORTED_ERRORS]


def describe(errors: list[SchemaError]) -> str:
    """One line for logs and DLQ headers: `path: message; path: message`."""
    return "; ".join(str(e) for e in errors)


# ---- explaining jsonschema's errors ------------------------------------------------------------


def _leaves(errors: Iterable[Any]) -> Iterator[Any]:
    """Expand combinator wrappers into the concrete errors underneath them."""
    for error in errors:
        if error.context:
            yield from _leaves(error.context)
        else:
            yield error


_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
    "object": "an object",
    "array": "an array",
    "integer": "an integer",
}


# The order the schema lists types in (jsonschema-rs reports them sorted by name).
_TYPE_ORDER = ["string", "number", "integer", "boolean", "object", "array", "null"]


def _expected(types: object) -> str:
    names = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    names.sort(key=lambda n: _TYPE_ORDER.index(n) if n in _TYPE_ORDER else len(_TYPE_ORDER))
    if "string" in names and "boolean" in names:  # a Java String: text, number or boolean
        names = [n for n in names if n not in {"number", "boolean"}]
    if names[:2] == ["string", "number"]:
        return "an ISO-8601 date-time string or a number of seconds since the epoch" + (
            " or null" if "null" in names else ""
        )
    words = [_TYPE_NAMES.get(n, n) for n in names]
    return " or ".join(words)


def _explain(error: Any, event: dict[str, Any], kind: EventKind) -> tuple[list[Any], str]:
    parts = list(error.absolute_path)
    validator = error.validator
    instance = error.instance
    if validator == "required" and isinstance(instance, dict):
        missing = next(
            (p for p in error.validator_value if p not in instance and repr(p) in error.message),
            None,
        )
        if missing is not None:
            parts.append(missing)
            return parts, _missing(parts, event, kind)
    if validator == "type":
        got = _type(instance)
        if instance is None:
            return parts, f"is null; Marquez requires {_expected(error.validator_value)} here"
        return parts, f"expected {_expected(error.validator_value)}, got {got}"
    if validator == "format" and error.cause is not None:
        return parts, str(error.cause)
    if validator in {"minimum", "exclusiveMaximum"}:
        return parts, (
            f"{_short(instance)} seconds since the epoch is outside what Marquez's PostgreSQL "
            "stores (4713 BC to 294276 AD)"
        )
    return parts, error.message


def _missing(parts: list[Any], event: dict[str, Any], kind: EventKind) -> str:
    name = parts[-1]
    if len(parts) == 1 and kind is EventKind.RUN and name in {"run", "job"}:
        url = event.get("schemaURL")
        if "dataset" in event or ("job" in event and name == "run"):
            return (
                f"missing: Marquez reads this as a RunEvent, which needs '{name}', as its "
                f"schemaURL ({_short(url)}) does not end in /DatasetEvent or /JobEvent; for "
                "static lineage end schemaURL in #/$defs/DatasetEvent or #/$defs/JobEvent"
            )
    if name in {"_producer", "_schemaURL"}:
        return (
            f"missing: Marquez reads this facet into a typed class that requires {name} "
            "(a URI); add it"
        )
    return f"missing: Marquez requires '{name}' here; add it"


# ---- Marquez's namespace and name rules --------------------------------------------------------

_NAMESPACE = re.compile(r"[a-zA-Z:;=/0-9_\-.@+]{1,1024}", re.ASCII)
_NAMESPACE_CHAR = re.compile(r"[^a-zA-Z:;=/0-9_\-.@+]", re.ASCII)


def _text(value: object) -> str:
    """The text Jackson makes of a scalar read into a Java String."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:  # an int beyond Python's digit limit
        return "9" * (MAX_NUMBER_DIGITS + 1)


#: A tuple, not `str | int | float`: isinstance with a union costs ~10x (~0.45 us a call).
_TEXT_TYPES = (str, int, float)


def _is_text(value: object) -> bool:
    return isinstance(value, _TEXT_TYPES)  # bool is an int


def _blank(value: object) -> bool:
    """Is `value` text that Java's String.trim() leaves empty (a blank name)?"""
    if type(value) is str:  # the everyday case, without the conversions below
        return not value.strip(_JAVA_BLANK)
    return _is_text(value) and not _text(value).strip(_JAVA_BLANK)


def _namespace_problem(value: object) -> str | None:
    text = _text(value)
    if _NAMESPACE.fullmatch(text):
        return None
    if not text:
        return "is empty"
    if len(text) > 1024:
        return f"is {len(text)} characters long"
    bad = _NAMESPACE_CHAR.search(text)
    assert bad is not None
    return f"has {bad.group()!r} at index {bad.start()}"


def _names_plain(event: dict[str, Any]) -> bool:
    """True when no name rule can fail, whatever the event type: the job's namespace and
    name and every dataset's (inputs and outputs alike) are strings, each dataset's
    namespace matches NamespaceName and no name is blank. False says only "look closer":
    anything else (a missing or non-string name, a dataset that is not an object) gets
    the full diagnosis, `_name_diagnosis`."""
    job = event.get("job")
    if type(job) is not dict:
        return False
    namespace, name = job.get("namespace"), job.get("name")
    if type(namespace) is not str or not 0 < len(namespace) <= 1024:
        return False
    if type(name) is not str or not name.strip(_JAVA_BLANK):
        return False
    for side in (event.get("inputs"), event.get("outputs")):
        if side is None:
            continue
        if type(side) is not list:
            return False
        for dataset in side:
            if type(dataset) is not dict:
                return False
            namespace, name = dataset.get("namespace"), dataset.get("name")
            if type(namespace) is not str or _NAMESPACE.fullmatch(namespace) is None:
                return False
            if type(name) is not str or not name.strip(_JAVA_BLANK):
                return False
    return True


def _name_errors(event: dict[str, Any], kind: EventKind) -> list[tuple[list[Any], str]]:
    """Marquez's NamespaceName, DatasetName and JobName checks (an HTTP 400 there).

    The everyday event, every name plain (`_names_plain`), has none in one pass; any
    other is diagnosed by `_name_diagnosis`."""
    if kind is EventKind.DATASET or _names_plain(event):
        return []
    return _name_diagnosis(event, kind)


def _name_diagnosis(event: dict[str, Any], kind: EventKind) -> list[tuple[list[Any], str]]:
    """Every name error of `event`, with its path and message.

    Marquez applies them while it builds its model: to the input datasets of every
    RunEvent; to the outputs and the job too when a RunEvent is COMPLETE, FAIL or ABORT
    or its job is streaming (a job version is written); to the job of a RunEvent with
    an eventType and inputs; and to the job and every dataset of a JobEvent. A
    DatasetEvent is stored without them.
    """
    if kind is EventKind.DATASET:
        return []
    job = event.get("job")
    job = job if isinstance(job, dict) else {}
    if kind is EventKind.JOB:
        why = "in a JobEvent"
        check_outputs = check_job = True
    else:
        event_type = event.get("eventType")
        terminal = _is_text(event_type) and _text(event_type).lower() in _TERMINAL_EVENT_TYPES
        inputs = event.get("inputs")
        why = "in a COMPLETE/FAIL/ABORT event" if terminal else "for a streaming job"
        check_outputs = terminal or _processing_type(job).lower() == "streaming"
        check_job = check_outputs or (event_type is not None and bool(inputs))
        if check_job and not check_outputs:
            why = "in an event with an eventType and inputs"
    out: list[tuple[list[Any], str]] = []
    sides = ("inputs", "outputs") if check_outputs else ("inputs",)
    for side in sides:
        items = event.get(side)
        for index, dataset in enumerate(items if isinstance(items, list) else []):
            if not isinstance(dataset, dict):
                continue
            namespace = dataset.get("namespace")
            # A string matching NamespaceName (the everyday case) has no problem to find.
            ok = type(namespace) is str and _NAMESPACE.fullmatch(namespace) is not None
            problem = None if ok or not _is_text(namespace) else _namespace_problem(namespace)
            if problem:
                where = "an input" if side == "inputs" else "an output"
                context = "" if side == "inputs" and kind is EventKind.RUN else f" {why}"
                out.append(
                    (
                        [side, index, "namespace"],
                        f"{problem}; Marquez (NamespaceName) accepts only letters, digits and "
                        f"_ - . : ; = / @ + (1 to 1024 characters) in the namespace of {where} "
                        f"dataset{context}",
                    )
                )
            name = dataset.get("name")
            if _blank(name):
                out.append(([side, index, "name"], "is blank; Marquez (DatasetName) refuses it"))
    if check_job:
        namespace, name = job.get("namespace"), job.get("name")
        if _is_text(namespace) and not 1 <= len(_text(namespace)) <= 1024:
            out.append(
                (
                    ["job", "namespace"],
                    f"must be 1 to 1024 characters {why} (Marquez's NamespaceName)",
                )
            )
        if _blank(name):
            out.append((["job", "name"], f"is blank; Marquez (JobName) refuses it {why}"))
    return out


def _processing_type(job: dict[str, Any]) -> str:
    facets = job.get("facets")
    job_type = facets.get("jobType") if isinstance(facets, dict) else None
    value = job_type.get("processingType") if isinstance(job_type, dict) else None
    return _text(value) if _is_text(value) else ""


# ---- small helpers ------------------------------------------------------------------------------


def _type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: object, limit: int = 60) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return "<a very long number>"
    text = repr(value) if isinstance(value, str) else _text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path_key(parts: list[Any]) -> list[tuple[int, Any]]:
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in parts]


def _walk(value: object) -> Iterator[tuple[list[Any], object]]:
    """Every (path, value) and (path, key) in `value`, without recursion."""
    stack: deque[tuple[list[Any], object]] = deque([([], value)])
    while stack:
        parts, node = stack.pop()
        yield parts, node
        if isinstance(node, dict):
            for key, child in node.items():
                yield [*parts, key], key
                stack.append(([*parts, key], child))
        elif isinstance(node, list):
            stack.extend(([*parts, i], child) for i, child in enumerate(node))


def lone_surrogate_path(value: object) -> str | None:
    """The path of the first string (or key) holding a lone UTF-16 surrogate, if any.

    Python's JSON parser accepts `"\\ud800"`, but such a string is not Unicode and
    cannot be written as UTF-8.
    """
    for parts, node in _walk(value):
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return json_path(parts)
    return None
