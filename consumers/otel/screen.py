"""The check an OTLP request passes alone, as it is read from Kafka, before its batch is
decoded into Arrow (`arrow_spans`, `arrow_metrics`): both kinds walk resource -> scope ->
leaf (span or metric) the same way, here, each with its own check of a scope's leaves.

A request this check cannot vouch for is given to the row decoder at once, which stores it
or refuses it for the reason it always gave: unknown fields where that decoder refuses
them, leaves it must judge (a metric without a name or data), no rows, or bytes not in
canonical form (encoded again they differ: a field given twice, fields out of order,
defaults written out, two members of a `oneof`), which protobuf merges by its rules and a
columnar parser need not.

No pyarrow here: a consumer imports it with the first record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from consumers.otel.columns import Pending, Rows
from consumers.otel.decode import DecodeError, _parse

# A scope's leaves: add their rows to the request's count per table; False when the row
# decoder must decide the request.
LeafCheck = Callable[[Any, dict[str, int]], bool]


@dataclass(frozen=True)
class Kind:
    """One OTLP request type: its message, the names of its levels, its leaf check, the
    row decoder that decides what the check does not, and the batch decoder."""

    message: type[Message]
    resources: str  # e.g. "resource_spans"
    scopes: str  # e.g. "scope_spans"
    check_scopes: bool  # whether the row decoder refuses unknown fields in a scope
    leaves: LeafCheck
    row_decoder: Callable[[bytes | None], Mapping[str, Rows]]
    table: str  # the table a `Pending` is filed under (the batch decodes every table)
    batch: Callable[[list[bytes]], list[Any]]
    empty: str | None = None  # the "empty" refusal given at once (None: the row decoder's)


def rows_if_plain(request: Any, kind: Kind) -> int | None:
    """The most rows the request adds to one table (what bounds a batch's inserts), or
    None when a level or a leaf leaves it to the row decoder."""
    rows: dict[str, int] = {}
    for resource in getattr(request, kind.resources):
        if UnknownFieldSet(resource):
            return None
        for scope in getattr(resource, kind.scopes):
            if kind.check_scopes and UnknownFieldSet(scope):
                return None
            if not kind.leaves(scope, rows):
                return None
    return max(rows.values(), default=0)


def screen(raw: bytes | None, kind: Kind) -> Mapping[str, Rows | Pending]:
    """`raw` parsed and checked alone: `Pending` for its batch, or the row decoder's rows
    (a `DecodeError` raised for a request refused)."""
    request = _parse(kind.message, raw, kind.message.DESCRIPTOR.name)
    assert raw is not None  # `_parse` refuses an empty record
    rows = rows_if_plain(request, kind)
    if rows is None:
        return kind.row_decoder(raw)
    if not rows and kind.empty is not None:
        raise DecodeError("empty", kind.empty)
    if not rows or request.SerializeToString() != raw:
        return kind.row_decoder(raw)
    return {kind.table: Pending(raw, rows, kind.batch)}
