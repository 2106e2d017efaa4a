"""Build a Go program from a tiny module of ours that requires it as a `tool`.

Each module under `stack/gotools/<name>/` has only a go.mod/go.sum that pin
the program's module (`go get -tool <pkg>@<version>`); `go build <pkg>` from
that directory builds it with exactly those versions, fetched through the Go
module proxy. The binary lands in `<cache>/bin/<name>-<version>`; a sidecar
key file records the go.mod/go.sum/flags it was built from.
"""

from __future__ import annotations

import os
from pathlib import Path

from stack import paths
from stack.errors import StackError
from stack.gocompile import go_build as compile_with_progress
from stack.gocompile import go_plan
from stack.piece import build_lock, build_log, content_key

GOTOOLS = paths.REPO_ROOT / "stack" / "gotools"


def binary_path(name: str, version: str) -> Path:
    return paths.cache_dir() / "bin" / f"{name}-{version}"


def _key(name: str, version: str, ldflags: str) -> str:
    module = GOTOOLS / name
    return content_key(module / "go.mod", module / "go.sum", extra=f"{version} {ldflags}")


def is_built(name: str, version: str, ldflags: str) -> bool:
    """The cached binary is there and was built from the current go.mod/go.sum/flags."""
    out = binary_path(name, version)
    key_file = out.with_name(out.name + ".key")
    return (
        out.is_file()
        and key_file.is_file()
        and key_file.read_text().strip() == _key(name, version, ldflags)
    )


def _env() -> dict[str, str]:
    # GOTOOLCHAIN=local: never try to download another Go toolchain; a too-old
    # local Go fails here with a message naming the version it needs.
    return {**os.environ, "GOTOOLCHAIN": "local"}


def go_fetch(piece: str, name: str, version: str, package: str, ldflags: str) -> None:
    """Download the modules the build of `package` needs, unless the binary is current."""
    if is_built(name, version, ldflags):
        return
    go_plan(
        piece,
        f"{name} {version} (Go modules)",
        packages=[package],
        flags=["-trimpath", f"-ldflags={ldflags}"],
        cwd=GOTOOLS / name,
        env=_env(),
        log=build_log(piece),
    )


def go_build(piece: str, name: str, version: str, package: str, ldflags: str) -> Path:
    """Build `package` from `stack/gotools/<name>` unless the cached binary is current."""
    out = binary_path(name, version)
    key_file = out.with_name(out.name + ".key")
    key = _key(name, version, ldflags)
    if is_built(name, version, ldflags):
        return out
    with build_lock(f"{name}-{version}"):
        # Checked again under the lock: another stack may have built it meanwhile.
        if not is_built(name, version, ldflags):
            _compile(piece, name, version, package, ldflags, out)
            key_file.write_text(key + "\n")
    return out


def _compile(piece: str, name: str, version: str, package: str, ldflags: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    compile_with_progress(
        piece,
        f"building {name} {version} (Go, {package})",
        packages=[package],
        flags=["-trimpath", f"-ldflags={ldflags}"],
        out=partial,
        cwd=GOTOOLS / name,
        env=_env(),
        log=build_log(piece),
    )
    if not partial.is_file():
        raise StackError(piece, f"go build produced no {partial.name}", build_log(piece))
    partial.replace(out)
