"""CPU per OpenLineage event of the validation both doors run, beside its baselines.

    .venv/bin/python bench/bench_gateway_validation.py [--runs 500] [--repeat 7]

The events are the Marquez consumer bench's (START + COMPLETE per run, schema, column
lineage and statistics facets: about 1.5 KB each). Each row is the best of `--repeat`
passes over all of them, in microseconds per event, all in this one run:

* `schema_errors` (ours): the compiled jsonschema-rs validator plus Marquez's name
  rules, what `gateway.lineage.check` and the consumer run on every event;
* `fastjsonschema` (the previous implementation): the same schema and formats compiled
  to Python by fastjsonschema, plus the same name rules;
* `jsonschema`: the pure-Python validator that lists every error (the refusal path);
* `loads` (ours: orjson, exact parser as fallback) against `loads_exact` (the parser
  alone, what the consumer ran before), the consumer's whole `validate(raw)` and the
  gateway's whole door for one event (`parse_json` + `check`: validate, re-encode, key).

No stack needed: this is CPU only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastjsonschema

from bench.bench_warehouse import stage_events
from consumers.lineage.validate import validate
from gateway.body import parse_json
from gateway.lineage import check
from lineagehub import openlineage_schema as ol


def per_event_us(fn: Callable[[Any], object], items: list[Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def fastjsonschema_baseline() -> Callable[[dict[str, Any]], object]:
    """What `schema_errors` ran before on the hot path: fastjsonschema, then names."""
    formats = {name: ol._passing(problem) for name, problem in ol._FORMATS.items()}
    compiled = fastjsonschema.compile(
        ol._kind_schema(ol.EventKind.RUN), formats=formats, use_default=False
    )

    def check(event: dict[str, Any]) -> object:
        compiled(event)
        return ol._name_errors(event, ol.EventKind.RUN)

    return check


def name_rules(event: dict[str, Any]) -> object:
    """Marquez's namespace and name rules alone, the part of `schema_errors` in Python."""
    return ol._name_errors(event, ol.event_kind(event))


def gateway_door(raw: bytes) -> object:
    """What the gateway does to a single event's body before Kafka (no HTTP)."""
    value, _problem = parse_json(raw)
    return check(value, 1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    raws = [value for _key, value in stage_events(args.runs)]
    events = [ol.loads(raw)[0] for raw in raws]
    assert all(ol.schema_errors(e, ol.event_kind(e)) == [] for e in events)
    slow = ol._validator(ol.EventKind.RUN)
    before = fastjsonschema_baseline()
    rows = [
        (
            "schema_errors (ours, jsonschema-rs)",
            per_event_us(ol.schema_errors, events, args.repeat),
        ),
        (
            "  of which the compiled schema",
            per_event_us(ol._fast_validator(ol.EventKind.RUN).is_valid, events, args.repeat),
        ),
        ("  of which the name rules", per_event_us(name_rules, events, args.repeat)),
        ("fastjsonschema + names (before)", per_event_us(before, events, args.repeat)),
        ("jsonschema (refusal path)", per_event_us(slow.is_valid, events, args.repeat)),
        ("loads (ours: orjson first)", per_event_us(ol.loads, raws, args.repeat)),
        ("loads_exact (before)", per_event_us(ol.loads_exact, raws, args.repeat)),
        ("consumer validate(raw), whole", per_event_us(validate, raws, args.repeat)),
        ("gateway parse_json + check, whole", per_event_us(gateway_door, raws, args.repeat)),
    ]
    size = sum(map(len, raws)) / len(raws)
    print(f"{len(events)} events, {size:.0f} bytes each on average; best of {args.repeat}")
    print(f"{'':40} {'us/event':>10}")
    for name, us in rows:
        print(f"{name:40} {us:10.1f}")
    ours, fast_before, slow_us = rows[0][1], rows[3][1], rows[4][1]
    print(f"ratio schema_errors before/now: {fast_before / ours:.1f}x faster")
    print(f"ratio jsonschema/now:           {slow_us / ours:.1f}x faster")
    print(f"ratio loads_exact/loads:        {rows[6][1] / rows[5][1]:.1f}x faster")


if __name__ == "__main__":
    main()
