"""Container paths → host folders, for processes that cannot mount anything.

A process shares the host's filesystem, so a volumeMount at `/data` cannot
appear at `/data`. Instead every mount (and the termination-message file) is
a host folder, and the kubelet:

1. builds a per-container root folder holding a symlink at each mount path
   (`<root>/data -> <host folder>`), so relative paths and a browse of the
   root show the container's view; the process runs with its working dir in
   that view (`workingDir` mapped the same way);
2. rewrites container paths in the process's argv and env values: each
   occurrence of a mount path that starts a path (at the start of the value,
   or after a character that cannot be part of a path such as `=`, `:`,
   space, quote, or after `file://`) and ends at `/` or a path boundary is
   replaced by the host folder. `--out=/data/x.csv`, `file:///data/in.csv`
   and `python -c "open('/data/x')"` all reach the volume; `/database` and
   `http://h/data` do not.

Paths a program builds at run time from pieces the kubelet never sees (or
reads from a hard-coded location) are not rewritten; the env var
`LINEAGEHUB_CONTAINER_ROOT` names the root so such programs can opt in.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path.strip().lstrip("/"))


@dataclass
class PathMap:
    """Mount path (inside the container) → host path."""

    root: Path
    mounts: dict[str, str] = field(default_factory=dict)

    def add(self, container_path: str, host_path: str | Path) -> None:
        cpath = _norm(container_path)
        if cpath == "/":
            raise ValueError("a volume cannot be mounted at /")
        self.mounts[cpath] = str(host_path)

    def _ordered(self) -> list[tuple[str, str]]:
        return sorted(self.mounts.items(), key=lambda kv: -len(kv[0]))

    def host(self, container_path: str) -> str:
        """Where a container path lives on the host (outside mounts: under the root)."""
        cpath = _norm(container_path)
        for mount, host in self._ordered():
            if cpath == mount:
                return host
            if cpath.startswith(mount + "/"):
                return host + cpath[len(mount) :]
        return str(self.root) + ("" if cpath == "/" else cpath)

    def _pattern(self) -> re.Pattern[str] | None:
        if not self.mounts:
            return None
        alternatives = "|".join(re.escape(m) for m, _ in self._ordered())
        return re.compile(
            r"(?:(?<=file://)|(?<![\w.~/\-$]))(" + alternatives + r")(?=/|$|[^\w.\-])"
        )

    def rewrite(self, value: str) -> str:
        pattern = self._pattern()
        if pattern is None:
            return value
        return pattern.sub(lambda m: self.mounts[m.group(1)], value)

    def rewrite_all(self, values: Iterable[str]) -> list[str]:
        return [self.rewrite(v) for v in values]

    def rewrite_env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {k: self.rewrite(v) for k, v in env.items()}

    def build_root(self) -> None:
        """Create the root folder with a symlink at each mount path (idempotent)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for mount, host in sorted(self.mounts.items()):
            if any(mount.startswith(outer + "/") for outer in self.mounts):
                continue  # nested in another mount: reached through the rewrite only
            link = Path(str(self.root) + mount)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                if str(link.readlink()) == host:
                    continue
                link.unlink()
            elif link.exists():
                continue  # a real folder made for an outer path; leave it
            link.symlink_to(host)
