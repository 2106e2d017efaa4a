"""Lineage graph node ids in Marquez's form, built and parsed.

`dataset:<namespace>:<name>`, `job:<namespace>:<name>`,
`datasetField:<namespace>:<name>:<field>`. Namespaces follow the OpenLineage naming
spec, `scheme://authority` with an optional port (`postgres://db:5432`,
`s3://bucket`) or a bare word (`file`, `bigquery`), so the id is not simply split on
`:`: a namespace with `://` ends after its authority and port; a bare namespace ends
at the first `:`. The name is the rest (a field id's field is after the last `:`).
Stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

NodeType = Literal["dataset", "job", "datasetField"]
_TYPES: tuple[NodeType, ...] = ("dataset", "job", "datasetField")
_SCHEMED = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^:/]*(?::\d+)?):(.+)$", re.DOTALL)
MAX_ID_CHARS = 4096


class NodeIdError(ValueError):
    """Not a node id; the message says what is wrong and what the form is."""


@dataclass(frozen=True)
class NodeId:
    type: NodeType
    namespace: str
    name: str
    field: str = ""

    def __str__(self) -> str:
        if self.type == "datasetField":
            return field_node(self.namespace, self.name, self.field)
        return f"{self.type}:{self.namespace}:{self.name}"

    @property
    def dataset(self) -> NodeId:
        """The dataset a field belongs to (a dataset or job id: itself)."""
        return NodeId("dataset", self.namespace, self.name) if self.field else self


def dataset_node(namespace: str, name: str) -> str:
    return f"dataset:{namespace}:{name}"


def job_node(namespace: str, name: str) -> str:
    return f"job:{namespace}:{name}"


def field_node(namespace: str, name: str, field: str) -> str:
    return f"datasetField:{namespace}:{name}:{field}"


def _split_namespace(rest: str) -> tuple[str, str]:
    m = _SCHEMED.match(rest)
    if m is not None:
        return m.group(1), m.group(2)
    namespace, sep, name = rest.partition(":")
    if not sep or "/" in namespace:
        raise NodeIdError("expected <namespace>:<name> after the type")
    return namespace, name


def parse_node(text: str) -> NodeId:
    """Parse a node id, or raise NodeIdError saying why and what the form is."""
    form = "the form is dataset:<namespace>:<name>, job:<namespace>:<name> or " + (
        "datasetField:<namespace>:<name>:<field>"
    )
    if not text or len(text) > MAX_ID_CHARS:
        raise NodeIdError(f"a node id has 1 to {MAX_ID_CHARS} characters; {form}")
    kind, sep, rest = text.partition(":")
    if not sep or kind not in _TYPES:
        raise NodeIdError(f"unknown node type {kind[:32]!r}; {form}")
    try:
        namespace, name = _split_namespace(rest)
    except NodeIdError as exc:
        raise NodeIdError(f"{exc}; {form}") from None
    field = ""
    if kind == "datasetField":
        name, sep, field = name.rpartition(":")
        if not sep or not field:
            raise NodeIdError(f"a field id ends with :<field>; {form}")
    if not namespace or not name:
        raise NodeIdError(f"empty namespace or name; {form}")
    node_type: NodeType = "dataset" if kind == "dataset" else "job"
    if kind == "datasetField":
        node_type = "datasetField"
    return NodeId(node_type, namespace, name, field)
