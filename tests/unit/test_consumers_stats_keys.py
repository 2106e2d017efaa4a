"""`Stats` remembers each label set's series key: the counts must be what they were when
every call built its key (one series per label set, whatever the keyword order)."""

from __future__ import annotations

import pytest

from consumers import stats as stats_module
from consumers.stats import Stats


def test_one_series_per_label_set_whatever_the_keyword_order() -> None:
    s = Stats("lineage")
    s.inc("dead_lettered", topic="t", reason="schema")
    s.inc("dead_lettered", reason="schema", topic="t")
    s.inc("dead_lettered", topic="t", reason="http_4xx")
    s.inc("processed", 3, topic="t")
    assert s.get("dead_lettered", topic="t", reason="schema") == 2
    assert s.get("dead_lettered", reason="http_4xx") == 1
    assert s.get("processed", topic="t") == 3
    assert len(s.snapshot()[0]) == 3
    text = s.prometheus()
    assert (
        'lineagehub_consumer_dead_lettered_total{consumer="lineage",reason="schema",topic="t"} 2.0'
        in text
    )


def test_an_unknown_counter_is_refused_every_time() -> None:
    s = Stats("lineage")
    s.inc("processed", topic="t")
    for _ in range(2):
        with pytest.raises(KeyError):
            s.inc("procesed", topic="t")
    assert s.get("procesed") == 0


def test_counts_stay_right_past_the_remembered_label_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_module, "_REMEMBERED_LABEL_SETS", 2)
    s = Stats("lineage")
    for _ in range(3):
        for topic in ("a", "b", "c", "d", "e"):
            s.inc("processed", topic=topic)
            s.stored(topic, 0.003)
    assert [s.get("processed", topic=t) for t in "abcde"] == [3] * 5
    text = s.prometheus()
    for topic in "abcde":
        series = f'lineagehub_consumer_store_seconds_count{{consumer="lineage",topic="{topic}"}}'
        assert f"{series} 3.0" in text
