"""The rules of a stage's config that span fields, and its two derived values, as plain
functions: the pydantic models (`stage_spec`) and the stage's pydantic-free reader
(`stage_reader`) apply these same ones. Each raises `ValueError` saying what is wrong."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from lineagehub.api.enums import CheckType, SinkFormat, StageName

S3_ONLY_MESSAGE = "s3 options apply only to s3:// URIs"
CLICKHOUSE_MESSAGE = "format clickhouse goes with a clickhouse:// URI, and only with it"


def unique(items: list[str]) -> list[str]:
    """`items`, refused when one is there twice."""
    seen: set[str] = set()
    dupes = [i for i in items if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(f"duplicate entries: {sorted(set(dupes))}")
    return items


def check_s3_only(uri: str, s3: object | None) -> None:
    """S3 options go with an `s3://` URI only (a source's or a sink's)."""
    if s3 is not None and not uri.startswith("s3://"):
        raise ValueError(S3_ONLY_MESSAGE)


def check_sink(uri: str, format: SinkFormat, s3: object | None) -> None:
    check_s3_only(uri, s3)
    if (format == SinkFormat.CLICKHOUSE) != uri.startswith("clickhouse://"):
        raise ValueError(CLICKHOUSE_MESSAGE)


def check_quality(
    type: CheckType,
    min: float | None,
    max: float | None,
    values: Sequence[str] | None,
    pattern: str | None,
) -> None:
    """What a quality check of `type` needs and allows."""
    ranged = min is not None or max is not None
    if type == CheckType.RANGE and not ranged:
        raise ValueError("a range check needs min, max or both")
    if ranged and type != CheckType.RANGE:
        raise ValueError("min and max apply only to range checks")
    if min is not None and max is not None and min > max:
        raise ValueError("min must not exceed max")
    if (type == CheckType.ACCEPTED_VALUES) != (values is not None):
        raise ValueError("values is required for accepted_values checks and applies only to them")
    if (type == CheckType.REGEX) != (pattern is not None):
        raise ValueError("pattern is required for regex checks and applies only to them")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            # e.g. `a{99999999999}`: the repetition count overflows the compiler.
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc


def check_transform(renamed_to: Sequence[str] | None, derived: Sequence[str] | None) -> None:
    """No two columns renamed to one name; no two derived columns of one name."""
    if renamed_to:
        unique(list(renamed_to))
    if derived:
        unique(list(derived))


def display_name(name: str | None, type: CheckType, column: str) -> str:
    """A quality check's name in reports: its own, else `<type>_<column>`."""
    return name or f"{type.value}_{column}"


def intermediate_path(workspace: str, stage: StageName) -> str:
    """The Parquet file `stage` leaves in the workspace for the next one."""
    return str(PurePosixPath(workspace) / f"{stage.value}.parquet")
