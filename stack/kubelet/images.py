"""Image → local runtime mapping (`images.yaml`).

A container image is never pulled: its name is matched (fnmatch globs, first
match wins) against the configured patterns, and the matching runtime says
which PATH and env the container's process gets, and which entrypoint/cmd
stand in for the image's ENTRYPOINT/CMD.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stack import paths

DEFAULT_CONFIG = Path(__file__).with_name("images.yaml")


class ImageNotMapped(Exception):
    """No pattern in the image config matches an image."""

    def __init__(self, image: str, config: Path) -> None:
        self.image = image
        self.config = config
        super().__init__(
            f"image {image!r} is not mapped to a local runtime: add a pattern for it to {config}"
        )


class CommandError(Exception):
    """A container's command cannot be formed (e.g. args with no entrypoint)."""


@dataclass(frozen=True)
class Runtime:
    name: str
    path: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    image_id: str = ""

    def argv(self, command: list[str], args: list[str], where: str) -> list[str]:
        """Kubernetes semantics: `command` replaces ENTRYPOINT, `args` replace CMD."""
        if command:
            return [*command, *args]
        if self.entrypoint:
            return [*self.entrypoint, *(args or self.cmd)]
        if args:
            raise CommandError(
                f"{where}: container has args but no command, and runtime "
                f"{self.name!r} has no entrypoint to pass them to; set `command`"
            )
        if self.cmd:
            return list(self.cmd)
        raise CommandError(f"{where}: container has no command and runtime {self.name!r} no cmd")

    def search_path(self) -> str:
        host = "/usr/local/bin:/usr/bin:/bin"
        return ":".join([*self.path, host]) if self.path else host


@dataclass(frozen=True)
class ImageConfig:
    source: Path
    rules: tuple[tuple[str, Runtime], ...]

    def resolve(self, image: str) -> Runtime:
        for pattern, runtime in self.rules:
            if fnmatch.fnmatchcase(image, pattern):
                return runtime
        raise ImageNotMapped(image, self.source)


def _expand(value: str, repo: Path) -> str:
    return value.format(repo=repo, python_bin=Path(sys.executable).parent)


def load(config: Path = DEFAULT_CONFIG, repo: Path = paths.REPO_ROOT) -> ImageConfig:
    raw: Any = yaml.safe_load(config.read_text()) or {}
    runtimes: dict[str, Runtime] = {}
    for name, given in (raw.get("runtimes") or {}).items():
        spec = given or {}
        runtimes[name] = Runtime(
            name=name,
            path=tuple(os.path.normpath(_expand(p, repo)) for p in spec.get("path") or []),
            env={k: _expand(str(v), repo) for k, v in (spec.get("env") or {}).items()},
            entrypoint=tuple(_expand(str(a), repo) for a in spec.get("entrypoint") or []),
            cmd=tuple(_expand(str(a), repo) for a in spec.get("cmd") or []),
            image_id=f"local://{name}",
        )
    rules: list[tuple[str, Runtime]] = []
    for rule in raw.get("images") or []:
        name = rule.get("runtime")
        if name not in runtimes:
            raise ValueError(
                f"{config}: image pattern {rule.get('pattern')!r} names unknown runtime {name!r}"
            )
        rules.append((str(rule["pattern"]), runtimes[name]))
    return ImageConfig(source=config, rules=tuple(rules))
