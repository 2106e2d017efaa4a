"""The lineage warehouse writer's door, fuzzed: any record (random bytes, odd JSON,
OpenLineage-shaped events with hostile values) is either rows for every table, each
with every column the table declares, or one DecodeError with a reason and a detail;
never another exception (which would stop the consumer on that offset for good). And
every event both validation doors accept, the warehouse stores (bar eventTimes outside
ClickHouse's DateTime64 range)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given

from consumers.otel.decode import DecodeError
from consumers.warehouse.ddl import LINEAGE_SCHEMA
from consumers.warehouse.decode import decode_lineage
from gateway.lineage import Checked, check
from tests.unit.test_openlineage_fuzz import FUZZ, events, raw_bodies

REASONS = {"invalid_json", "invalid_event", "empty_record", "too_large"}


@FUZZ
@given(raw_bodies)
def test_any_record_is_rows_or_one_decode_error(raw: bytes) -> None:
    try:
        tables = decode_lineage(raw)
    except DecodeError as exc:
        assert exc.reason in REASONS and exc.detail
        return
    assert set(tables) <= set(LINEAGE_SCHEMA.tables)
    (event_row,) = tables["lineage_events"]
    for name, rows in tables.items():
        columns = set(LINEAGE_SCHEMA.tables[name].columns)
        for row in rows:
            assert set(row) == columns, name
            # Every text can be sent to ClickHouse as UTF-8 (a lone surrogate cannot).
            for value in row.values():
                for text in value if isinstance(value, list) else [value]:
                    if isinstance(text, str):
                        text.encode("utf-8")
    assert len(event_row["EventHash"]) == 32


@FUZZ
@given(events)
def test_what_the_gateway_accepts_the_warehouse_stores(event: dict[str, Any]) -> None:
    checked = check(copy.deepcopy(event), max_event_bytes=10_000_000)
    if not isinstance(checked, Checked):
        return
    try:
        tables = decode_lineage(checked.value)
    except DecodeError as exc:
        assert "1900..2262" in exc.detail, (exc, event)
        return
    assert len(tables["lineage_events"]) == 1


def test_a_lone_surrogate_in_a_schema_type_is_stored() -> None:
    """Found by the fuzzer: the schema hash's JSON encoder refused a lone surrogate."""
    raw = (
        b'{"eventTime": "2000-01-01T00:00:00", "producer": "", "schemaURL": '
        b'"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent", '
        b'"dataset": {"namespace": "s3://bucket", "name": "t", "facets": {"schema": '
        b'{"fields": [{"name": "a"}, {"name": "b", "type": "\\ud800"}]}}}}'
    )
    (row,) = decode_lineage(raw)["lineage_io"]
    assert row["FieldNames"] == ["a", "b"] and row["FieldTypes"] == ["", "\ufffd"]
    assert row["SchemaHash"]
