"""`Stats.get` remembers which series a query sums: its answers must stay those of
summing every series whose labels include the query's, as series keep appearing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers import stats as stats_module
from consumers.stats import Stats
from tests.fuzz import fuzz_settings


def scanned(s: Stats, name: str, **labels: str) -> float:
    """The answer by definition: every series of `name` whose labels include `labels`."""
    counters, _lag = s.snapshot()
    want = {(k, str(v)) for k, v in labels.items()} | {("consumer", s.consumer)}
    return sum(v for (n, lab), v in counters.items() if n == name and want <= set(lab))


def test_a_count_asked_before_its_series_existed_includes_them_once_they_do() -> None:
    s = Stats("otel")
    assert s.get("processed") == 0
    assert s.get("processed", topic="b") == 0
    s.inc("processed", topic="a")
    assert s.get("processed") == 1
    s.inc("processed", 2, topic="b")
    s.inc("dead_lettered", topic="b", reason="schema")  # another counter, same topic
    assert s.get("processed") == 3
    assert s.get("processed", topic="b") == 2
    s.inc("processed", topic="a")  # no new series: the remembered keys, fresh values
    assert s.get("processed") == 4


def test_partial_and_whole_label_sets() -> None:
    s = Stats("lineage")
    s.inc("dead_lettered", topic="t", reason="schema")
    s.inc("dead_lettered", topic="t", reason="http_4xx")
    s.inc("dead_lettered", topic="u", reason="schema")
    assert s.get("dead_lettered") == 3
    assert s.get("dead_lettered", reason="schema") == 2
    assert s.get("dead_lettered", topic="t", reason="http_4xx") == 1
    assert s.get("dead_lettered", consumer="lineage") == 3
    assert s.get("dead_lettered", consumer="otel") == 0
    assert s.get("dead_lettered", topic="t", reason="nope") == 0


def test_answers_stay_right_past_the_remembered_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_module, "_REMEMBERED_LABEL_SETS", 1)
    s = Stats("otel")
    for round_ in range(1, 4):
        for topic in "abc":
            s.inc("processed", topic=topic)
        assert [s.get("processed", topic=t) for t in "abc"] == [round_] * 3
        assert s.get("processed") == 3 * round_


NAMES = st.sampled_from(["processed", "dead_lettered", "retried"])
LABELS = st.dictionaries(st.sampled_from(["topic", "reason"]), st.sampled_from(["x", "y"]))
STEPS = st.lists(
    st.tuples(st.booleans(), NAMES, LABELS, st.integers(min_value=1, max_value=5)),
    max_size=40,
)


@fuzz_settings(300)
@given(STEPS)
def test_every_answer_is_the_sum_over_the_matching_series(
    steps: list[tuple[bool, str, dict[str, str], int]],
) -> None:
    s = Stats("otel")
    for count, name, labels, amount in steps:
        if count:
            s.inc(name, amount, **labels)
        else:
            assert s.get(name, **labels) == scanned(s, name, **labels)
    for _count, name, labels, _amount in steps:
        assert s.get(name, **labels) == scanned(s, name, **labels)
