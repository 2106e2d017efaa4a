"""Read Prometheus text with prometheus_client's own parser (tests)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

#: (family type, sample name, label names without `le`) for every series in a scrape.
Shape = tuple[str, str, frozenset[str]]


def shapes(text: str) -> set[Shape]:
    return {
        (family.type, sample.name, frozenset(k for k in sample.labels if k != "le"))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The value of the one sample `name` with exactly `labels`; 0 when absent (a
    counter never incremented), an error when several match."""
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples named {name} with {labels}")
    return found[0] if found else 0.0
