"""Field descriptions from attribute docstrings, read when a JSON schema is made.

A field's docstring (the string under it) is its description in the CRD (`kubectl
explain`) and in the gateway's OpenAPI. pydantic's `use_attribute_docstrings` reads
every model's source as the class is created (inspect and tokenize, milliseconds a
class), which every process importing the API paid, a stage too, for text only a
schema shows. Here a module's source is parsed once, the first time a schema of one of
its models is generated, and nothing is read on import or validation.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import sys
from typing import Any

from pydantic import BaseModel


def _attribute_docs(body: list[ast.stmt]) -> dict[str, str]:
    """`{field: docstring}` of one class body: a string statement right after an
    annotated name (as pydantic's `use_attribute_docstrings` reads them)."""
    docs: dict[str, str] = {}
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


@functools.cache
def module_docstrings(module: str) -> dict[str, dict[str, str]]:
    """`{class qualname: {field: docstring}}` for the classes a module's source defines,
    in functions too (an empty mapping when its source cannot be read)."""
    try:
        source = inspect.getsource(sys.modules[module])
    except (KeyError, OSError, TypeError):
        return {}
    found: dict[str, dict[str, str]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                found[prefix + node.name] = _attribute_docs(node.body)
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(node.body, f"{prefix}{node.name}.<locals>.")

    visit(ast.parse(source).body, "")
    return found


def field_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Each field's docstring, taken from the class that declares the field."""
    docs: dict[str, str] = {}
    for name in model.model_fields:
        owner = next((k for k in model.__mro__ if name in inspect.get_annotations(k)), None)
        if owner is None:
            continue
        doc = module_docstrings(owner.__module__).get(owner.__qualname__, {}).get(name)
        if doc:
            docs[name] = doc
    return docs


def describe_fields(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Give each property of `model`'s JSON schema without a description its field's
    docstring (properties are keyed by alias or by name, as the schema was asked for)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    docs = field_docstrings(model)
    for name, info in model.model_fields.items():
        doc = docs.get(name)
        if doc is None or info.description is not None:
            continue
        key = info.alias if info.alias in properties else name
        prop = properties.get(key)
        if isinstance(prop, dict) and "description" not in prop:
            prop["description"] = doc
