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
