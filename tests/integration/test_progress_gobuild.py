"""A real `go build` through the progress reader: the counts it reports are what Go built.

A tiny module in a temp dir with its own GOCACHE, so the first build really
compiles, the second compiles only what changed, and a broken package is named.
Its packages import nothing from the standard library, which keeps a cold build
to a few packages. Needs only the Go toolchain (no stack).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import progress
from stack.errors import StackError
from stack.gocompile import go_build

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")

MODULE = "example.com/tiny"
FILES = {
    "go.mod": f"module {MODULE}\n\ngo 1.24\n",
    "leaf/leaf.go": "package leaf\n\nfunc N() int { return 1 }\n",
    "mid/mid.go": f'package mid\n\nimport "{MODULE}/leaf"\n\nfunc N() int {{ return leaf.N() }}\n',
    "tiny.go": f'package tiny\n\nimport "{MODULE}/mid"\n\nfunc N() int {{ return mid.N() }}\n',
}


@pytest.fixture
def module(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def told() -> Iterator[io.StringIO]:
    out = io.StringIO()
    progress.use(progress.Reporter(out, tty=False))
    yield out
    progress.use(progress.Reporter(None))


def build(module: Path, tmp_path: Path) -> tuple[set[str], set[str], Path]:
    out, log = tmp_path / "tiny.a", tmp_path / "build.log"
    result = go_build(
        "tiny", "building tiny", packages=["."], flags=["-trimpath"], out=out, cwd=module,
        env=_env(tmp_path), log=log,
    )  # fmt: skip
    return result.to_compile, result.compiled, out


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GOCACHE": str(tmp_path / "gocache"),
        "GOFLAGS": "-buildvcs=false",
        "GOTOOLCHAIN": "local",
    }


def test_cold_build_counts_every_package_go_compiled(
    module: Path, tmp_path: Path, told: io.StringIO
) -> None:
    planned, compiled, binary = build(module, tmp_path)
    assert binary.is_file()
    ours = {MODULE, f"{MODULE}/leaf", f"{MODULE}/mid"}
    assert compiled == planned == ours
    said = told.getvalue()
    assert f"building tiny: done, {len(compiled):,} packages compiled and linked" in said
    assert f"{len(planned):,} of " in said  # the plan line: N of M packages to compile


def test_warm_build_compiles_only_what_changed(
    module: Path, tmp_path: Path, told: io.StringIO
) -> None:
    build(module, tmp_path)
    (module / "tiny.go").write_text(FILES["tiny.go"].replace("mid.N()", "mid.N() + 0"))
    planned, compiled, _ = build(module, tmp_path)
    assert planned == compiled == {MODULE}
    assert "building tiny: done, 1 packages compiled and linked" in told.getvalue()


def test_a_broken_package_is_named_with_the_log(
    module: Path, tmp_path: Path, told: io.StringIO
) -> None:
    (module / "leaf" / "leaf.go").write_text("package leaf\n\nfunc N() int { return nope }\n")
    with pytest.raises(StackError) as err:
        build(module, tmp_path)
    assert f"go build failed in {MODULE}/leaf" in str(err.value)
    log = (tmp_path / "build.log").read_text()
    assert "undefined: nope" in log  # the compiler's own words, decoded from the JSON events
    assert "building tiny: FAILED" in told.getvalue()


def test_one_build_of_two_mains_compiles_what_they_share_once(
    module: Path, tmp_path: Path, told: io.StringIO
) -> None:
    """The control plane and Helm are one `go build` of two mains into a folder."""
    for name in ("one", "two"):
        main = f'package main\n\nimport "{MODULE}/mid"\n\nfunc main() {{ _ = mid.N() }}\n'
        (module / "cmd" / name).mkdir(parents=True)
        (module / "cmd" / name / "main.go").write_text(main)
    out = tmp_path / "bin"
    out.mkdir()
    result = go_build(
        "tiny", "building two", packages=["./cmd/one", "./cmd/two"], flags=["-trimpath"],
        out=out, cwd=module, env=_env(tmp_path), log=tmp_path / "build.log",
    )  # fmt: skip
    assert (out / "one").is_file() and (out / "two").is_file()
    shared = {f"{MODULE}/leaf", f"{MODULE}/mid"}
    assert shared <= result.compiled == result.to_compile
    assert {f"{MODULE}/cmd/one", f"{MODULE}/cmd/two"} <= result.compiled
    log = (tmp_path / "build.log").read_text()
    assert log.count(f"\n{MODULE}/mid\n") == 1  # -v names each package it compiles, once
