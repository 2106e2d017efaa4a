"""Changes to a nested document (JSON's or YAML's: dicts and lists): what the readers'
tests (`test_api_stage_reader`, `test_api_run_reader`) do to a good config or manifest
before they ask the reader and the models about it. The document given is never
changed: each function hands back a changed deep copy."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

Path = tuple[Any, ...]


def paths(data: Any, at: Path = ()) -> list[Path]:
    """Every place in `data`: each key of a dict and index of a list, at any depth."""
    found = [at] if at else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*at, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += paths(value, (*at, i))
    return found


def _copy_and_parent(data: Any, path: Path) -> tuple[Any, Any]:
    """A deep copy of `data`, and the dict or list in it that holds `path`'s last step."""
    out = copy.deepcopy(data)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    return out, parent


def changed(data: Any, path: Path, value: Any) -> Any:
    """`data` with `value` at `path`."""
    out, parent = _copy_and_parent(data, path)
    parent[path[-1]] = value
    return out


def damaged(data: Any, path: Path, action: str, value: Any, added: Any) -> Any:
    """`data` damaged at `path`: `set` puts `value` there, `drop` removes it, `add` gives
    the object there a field `added` of `value` (or, where no object is, puts `value`)."""
    out, parent = _copy_and_parent(data, path)
    last = path[-1]
    if action == "set":
        parent[last] = value
    elif action == "drop":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][added] = value
    else:
        parent[last] = value
    return out


def damages(
    data: Any, values: st.SearchStrategy[Any], added: Sequence[Any]
) -> st.SearchStrategy[tuple[Any, Any]]:
    """Copies of `data`, each damaged once anywhere (`damaged`) by one of `values` or
    `added`'s fields, each with the value it was given."""

    def damage(path: Path, action: str, value: Any, field: Any) -> tuple[Any, Any]:
        return damaged(data, path, action, value, field), value

    return st.builds(
        damage,
        st.sampled_from(paths(data)),
        st.sampled_from(["set", "drop", "add"]),
        values,
        st.sampled_from(added),
    )
