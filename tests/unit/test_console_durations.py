"""The console's durations (gateway/console/static/durations.js), run in node as the
page runs them: a run's or a stage's duration from its status times, to the
millisecond when the status has the precise times (as the operator writes them),
and only to the second, saying so, from the whole-second ones."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.console_pages import STATIC
from lineagehub.api.pipelinerun import format_precise_time, format_time

NODE = shutil.which("node")
NO_VALUE = "\N{EN DASH}"  # what the console shows for a duration not known
pytestmark = pytest.mark.skipif(NODE is None, reason="node comes with npm (scripts/setup.sh)")
#: Reads [[function, args], ...] on stdin, writes the results as a JSON list.
RUNNER = """
const d = require(process.argv[1]);
let text = "";
process.stdin.on("data", (c) => { text += c; });
process.stdin.on("end", () => {
  const out = JSON.parse(text).map(([fn, args]) => {
    const value = d[fn](...args);
    return value === undefined ? null : value;
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def call(*calls: tuple[str, list[Any]]) -> list[Any]:
    """The durations.js functions' results for `calls`, in one node process."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, "-e", RUNNER, str(STATIC / "durations.js")],
        input=json.dumps([[fn, args] for fn, args in calls]),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    results: list[Any] = json.loads(done.stdout)
    return results


def test_times_are_read_to_the_millisecond_whoever_wrote_them() -> None:
    texts = [
        "2026-12-01T04:00:05.123Z",
        "2026-12-01T04:00:05.123456Z",  # microseconds (metav1.MicroTime): to the ms
        "2026-12-01T05:00:05.123+01:00",
        "2026-12-01T04:00:05Z",
        "",
        None,
        "yesterday",
    ]
    base = int(datetime(2026, 12, 1, 4, 0, 5, tzinfo=UTC).timestamp() * 1000)
    assert call(*(("timeMs", [t]) for t in texts)) == [
        base + 123,
        base + 123,
        base + 123,
        base,
        None,
        None,
        None,
    ]


def test_the_precise_times_are_preferred_and_the_whole_seconds_said_to_be_so() -> None:
    stage = {
        "startTime": "2026-12-01T04:00:05Z",
        "completionTime": "2026-12-01T04:00:05Z",
        "startTimePrecise": "2026-12-01T04:00:05.021Z",
        "completionTimePrecise": "2026-12-01T04:00:05.041Z",
    }
    whole = {k: v for k, v in stage.items() if not k.endswith("Precise")}
    unfinished = {"startTime": "2026-12-01T04:00:05Z", "startTimePrecise": "x"}
    late_load = {"startTime": "2026-12-01T04:00:05Z", "completionTime": "2026-12-01T04:00:06Z"}
    assert call(
        ("statusDuration", [stage]),
        ("statusDuration", [whole]),
        ("statusDuration", [unfinished]),
        ("statusDuration", [None]),
        ("statusDuration", [late_load]),
    ) == [
        {"seconds": 0.02, "precise": True},
        {"seconds": 0, "precise": False},
        None,
        None,
        {"seconds": 1, "precise": False},
    ]


def test_durations_as_shown() -> None:
    cases = [
        ({"seconds": 0.02, "precise": True}, "20 ms"),  # was "0 ms" from whole seconds
        ({"seconds": 0.0004, "precise": True}, "0 ms"),
        ({"seconds": 0.9996, "precise": True}, "1000 ms"),
        ({"seconds": 1.25, "precise": True}, "1.3 s"),
        ({"seconds": 0, "precise": False}, "< 1 s"),  # one second's two ends: not "0 ms"
        ({"seconds": 1, "precise": False}, "≈ 1 s"),  # was "1.0 s": a 7 ms stage can be it
        ({"seconds": 250, "precise": False}, "≈ 4 min 10 s"),
        (None, NO_VALUE),
    ]
    assert call(*(("fmtDuration", [d]) for d, _ in cases)) == [shown for _, shown in cases]
    assert call(("fmtSeconds", [None]), ("fmtSeconds", [180000.0])) == [NO_VALUE, "2 days 2 h"]


def test_what_the_operator_writes_the_console_reads_back() -> None:
    """The operator's precise times, as written, give the console the duration to the
    millisecond; its whole-second times one off by less than a second. 500 drawn runs,
    from a 1 ms stage to a three-hour one, read in one node process."""
    draw = random.Random(15)
    cases = []
    for _ in range(500):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
            seconds=draw.uniform(0, 3e8), microseconds=draw.randrange(1_000_000)
        )
        took = timedelta(seconds=draw.choice([0.001, 0.02, 0.5, 1, 60, 10_800]) * draw.random())
        cases.append((start, start + took))
    statuses = [
        {
            "startTime": format_time(start),
            "completionTime": format_time(end),
            "startTimePrecise": format_precise_time(start),
            "completionTimePrecise": format_precise_time(end),
        }
        for start, end in cases
    ]
    wholes = [{k: v for k, v in s.items() if not k.endswith("Precise")} for s in statuses]
    found = call(*(("statusDuration", [s]) for s in [*statuses, *wholes]))
    for (start, end), precise, rough in zip(cases, found[:500], found[500:], strict=True):
        exact_ms = _ms(end) - _ms(start)
        assert precise["precise"] is True and round(precise["seconds"] * 1000) == exact_ms
        assert rough["precise"] is False
        assert abs(rough["seconds"] - (end - start).total_seconds()) < 1


def _ms(at: datetime) -> int:
    """Milliseconds since the epoch, truncated as the precise times are written."""
    return int(at.timestamp()) * 1000 + at.microsecond // 1000


def test_the_page_loads_them_before_its_script() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gateway import console_pages

    app = FastAPI()
    app.include_router(console_pages.router())
    with TestClient(app) as client:
        served = client.get("/console/static/durations.js")
        assert served.status_code == 200 and "function statusDuration" in served.text
        assert served.headers["content-type"].startswith("text/javascript")
        page = client.get("/console/run/ns/name").text
    assert page.index("/console/static/durations.js") < page.index("/console/static/app.js")
