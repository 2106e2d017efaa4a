"""The demo's stage table reads a stage's duration from the status's millisecond times."""

from __future__ import annotations

import pytest

from stack.demo import stage_duration


@pytest.mark.parametrize(
    ("stage", "shown"),
    [
        (
            {
                "startTime": "2026-12-01T04:00:05Z",
                "completionTime": "2026-12-01T04:00:05Z",
                "startTimePrecise": "2026-12-01T04:00:05.120Z",
                "completionTimePrecise": "2026-12-01T04:00:05.140Z",
            },
            "20 ms",
        ),
        (
            {
                "startTime": "2026-12-01T04:00:05Z",
                "completionTime": "2026-12-01T04:00:06Z",
                "startTimePrecise": "2026-12-01T04:00:05.990Z",
                "completionTimePrecise": "2026-12-01T04:00:06.005Z",
            },
            "15 ms",  # a second boundary crossed: whole seconds would say 1 s
        ),
        (
            {
                "startTimePrecise": "2026-12-01T04:00:05.000Z",
                "completionTimePrecise": "2026-12-01T04:00:06.250Z",
            },
            "1.25 s",
        ),
        ({"startTime": "2026-12-01T04:00:05Z", "completionTime": "2026-12-01T04:00:05Z"}, "< 1 s"),
        ({"startTime": "2026-12-01T04:00:05Z", "completionTime": "2026-12-01T04:00:08Z"}, "≈ 3 s"),
        ({"startTime": "2026-12-01T04:00:05Z"}, ""),
        ({}, ""),
    ],
)
def test_a_stages_duration_comes_from_its_precise_times(stage: dict[str, str], shown: str) -> None:
    assert stage_duration(stage) == shown
