"""The mutation report's reading of mutmut's exit codes: a code mutmut's table does not
know (-1: pytest never ran the tests) is no verdict, listed with the survivors, where the
table's default would call it a timeout and count the mutant killed."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.unit.test_runner_process import ROOT


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts/mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_an_unknown_exit_code_is_no_verdict_and_is_looked_at() -> None:
    script = _script()
    assert script.mutant_status(-1) == "no verdict"
    assert "no verdict" in script.NOT_KILLED
    assert script.mutant_status(1) == "killed"
    assert script.mutant_status(0) == "survived"
    assert script.mutant_status(36) == "timeout"
    assert script.mutant_status(None) == "not checked"
