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
from stack.piece import build_log, content_key, run_step

GOTOOLS = paths.REPO_ROOT / "stack" / "gotools"


def binary_path(name: str, version: str) -> Path:
    return paths.cache_dir() / "bin" / f"{name}-{version}"


def go_build(piece: str, name: str, version: str, package: str, ldflags: str) -> Path:
    """Build `package` from `stack/gotools/<name>` unless the cached binary is current."""
    module = GOTOOLS / name
    out = binary_path(name, version)
    key_file = out.with_name(out.name + ".key")
    key = content_key(module / "go.mod", module / "go.sum", extra=f"{version} {ldflags}")
    if out.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    # GOTOOLCHAIN=local: never try to download another Go toolchain; a too-old
    # local Go fails here with a message naming the version it needs.
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    run_step(
        piece,
        f"go build {package} ({version})",
        ["go", "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial), package],
        build_log(piece),
        cwd=module,
        env=env,
    )
    if not partial.is_file():
        raise StackError(piece, f"go build produced no {partial.name}", build_log(piece))
    partial.replace(out)
    key_file.write_text(key + "\n")
    return out
