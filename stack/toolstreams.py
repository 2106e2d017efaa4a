"""Read the build tools' own output into progress figures.

Each reader takes the lines a tool prints, one at a time, and says how far the
tool got: `go list -deps` (which packages a build will compile), `go build -json
-v` (which it has compiled), Maven's transfer log, pip, `npm ci --loglevel=http`
and apt's status lines. `feed` returns the text for the step's log (a Go JSON
event is decoded back to the text the tool would have printed). Standard library
only: `scripts/setup.sh` runs these before the virtualenv exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: `go list` says this of a main package whose build is cached but not installed:
#: `go build` compiles nothing for it.
_CACHED_MAIN = "not installed but available in build cache"
_GO_DOWNLOADING = re.compile(r"^go: downloading (\S+) (\S+)")
GO_LIST_FORMAT = "{{.ImportPath}}\t{{.Stale}}\t{{.StaleReason}}"


class StreamReader(Protocol):
    """What the progress runner needs from a tool's reader."""

    def feed(self, line: str, *, stderr: bool = False) -> str:
        """Take one line (with its newline); return the text to log."""
        ...

    def detail(self) -> str:
        """How far the tool got, for people (empty: nothing to say yet)."""
        ...


def count(n: int) -> str:
    return f"{n:,}"


def size(n: float) -> str:
    """Bytes for people: 950 B, 12.3 kB, 48.1 MB (decimal, as the tools print them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(text: str) -> float:
    """`12 kB`, `4.8 MB`, `73 kB` -> bytes (0 when unreadable)."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KkMmGg]?i?B)\s*", text)
    if match is None:
        return 0.0
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


class Lines:
    """A tool without figures of its own: its lines are logged, its last line said."""

    def __init__(self) -> None:
        self.last = ""

    def feed(self, line: str, *, stderr: bool = False) -> str:
        if line.strip():
            self.last = line.strip()[:80]
        return line

    def detail(self) -> str:
        return self.last


@dataclass
class GoDownloads:
    """`go: downloading MODULE VERSION` lines (stderr of any go command)."""

    modules: list[str] = field(default_factory=list)

    def see(self, line: str) -> bool:
        match = _GO_DOWNLOADING.match(line)
        if match:
            self.modules.append(f"{match.group(1)}@{match.group(2)}")
        return match is not None

    def detail(self) -> str:
        if not self.modules:
            return ""
        return f"{count(len(self.modules))} Go modules downloaded (last {self.modules[-1]})"


@dataclass
class GoPlan:
    """`go list -deps -f GO_LIST_FORMAT PKG` with the build's own flags: every package
    the build needs, and those it must compile (not in the build cache)."""

    packages: list[str] = field(default_factory=list)
    to_compile: set[str] = field(default_factory=set)
    downloads: GoDownloads = field(default_factory=GoDownloads)

    def feed(self, line: str, *, stderr: bool = False) -> str:
        if stderr:
            self.downloads.see(line)
            return line
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            return line
        path, stale, reason = parts
        self.packages.append(path)
        if stale == "true" and not reason.startswith(_CACHED_MAIN):
            self.to_compile.add(path)
        return ""  # the plan itself is summed up in the log by the caller

    def detail(self) -> str:
        said = self.downloads.detail()
        listed = f"{count(len(self.packages))} packages listed"
        return f"{said}, {listed}" if said else listed


@dataclass
class GoBuild:
    """`go build -json -v`: with -v the toolchain names each package it compiles, and
    with -json that name arrives as a `build-output` event of that package whose
    Output is the import path alone. Everything else is the build's own text."""

    to_compile: set[str]
    compiled: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)
    downloads: GoDownloads = field(default_factory=GoDownloads)

    def feed(self, line: str, *, stderr: bool = False) -> str:
        if stderr or not line.startswith("{"):
            self.downloads.see(line)
            return line
        try:
            event: Any = json.loads(line)
        except ValueError:
            return line
        if not isinstance(event, dict):
            return line
        path, action, output = event.get("ImportPath"), event.get("Action"), event.get("Output")
        if action == "build-fail":
            self.failed.append(str(path))
            return f"build failed: {path}\n"
        if action != "build-output" or not isinstance(output, str):
            return line
        if output == f"{path}\n":
            self.compiled.add(str(path))
        return output

    @property
    def total(self) -> int:
        """Packages to compile: those planned, and any the plan missed."""
        return len(self.to_compile | self.compiled)

    def detail(self) -> str:
        if self.failed:
            return f"failed in {', '.join(self.failed[:3])}"
        done, total = len(self.compiled), self.total
        if total and done >= total:
            return f"{count(done)}/{count(total)} packages compiled, linking"
        return f"{count(done)}/{count(total)} packages compiled"


_MAVEN_DOWNLOADED = re.compile(r"Downloaded from \S+: (\S+) \(([\d.]+ ?[kMG]?B)")
_MAVEN_COPYING = re.compile(r"Copying \S+ to ")


@dataclass
class Maven:
    """Maven's transfer log (batch mode, not -q): `Downloaded from central: URL (14 kB ...)`."""

    downloaded: int = 0
    jars: int = 0
    bytes: float = 0.0
    copied: int = 0

    def feed(self, line: str, *, stderr: bool = False) -> str:
        match = _MAVEN_DOWNLOADED.search(line)
        if match:
            self.downloaded += 1
            self.jars += match.group(1).endswith(".jar")
            self.bytes += parse_size(match.group(2))
        elif _MAVEN_COPYING.search(line):
            self.copied += 1
        return line

    def detail(self) -> str:
        said = (
            f"{count(self.downloaded)} artifacts downloaded "
            f"({count(self.jars)} jars, {size(self.bytes)})"
        )
        return f"{said}, {count(self.copied)} jars copied" if self.copied else said


_PIP_COLLECTING = re.compile(r"^(Collecting|Requirement already satisfied:) ")
_PIP_DOWNLOADING = re.compile(r"^\s+Downloading \S+ \(([^)]+)\)")
_PIP_INSTALLING = re.compile(r"^Installing collected packages: (.*)$")


@dataclass
class Pip:
    """pip install without -q and with `--progress-bar off`."""

    collected: int = 0
    downloaded: int = 0
    bytes: float = 0.0
    installing: int = 0
    installed: bool = False

    def feed(self, line: str, *, stderr: bool = False) -> str:
        text = line.rstrip("\n")
        if _PIP_COLLECTING.match(text):
            self.collected += 1
        elif match := _PIP_DOWNLOADING.match(text):
            self.downloaded += 1
            self.bytes += parse_size(match.group(1))
        elif match := _PIP_INSTALLING.match(text):
            self.installing = len([p for p in match.group(1).split(",") if p.strip()])
        elif text.startswith("Successfully installed "):
            self.installed = True
        return line

    def detail(self) -> str:
        if self.installed:
            return (
                f"{count(self.installing)} packages installed "
                f"({count(self.collected)} requirements resolved)"
            )
        if self.installing:
            return f"installing {count(self.installing)} packages"
        return (
            f"{count(self.collected)} requirements resolved, "
            f"{count(self.downloaded)} downloaded ({size(self.bytes)})"
        )


def npm_lock_packages(lock: Mapping[str, Any]) -> int:
    """Packages `npm ci` fetches for a package-lock.json (v2/v3): its node_modules entries."""
    packages = lock.get("packages") or {}
    return sum(
        1
        for path, entry in packages.items()
        if path.startswith("node_modules/") or "/node_modules/" in path
        if not (isinstance(entry, dict) and entry.get("link"))
    )


@dataclass
class Npm:
    """`npm ci --loglevel=http`: one `npm http fetch GET 200 URL` line per request;
    tarball URLs (`/-/`) are the packages, counted against the lockfile's."""

    total: int
    fetched: int = 0

    def feed(self, line: str, *, stderr: bool = False) -> str:
        parts = line.split()
        if parts[:4] == ["npm", "http", "fetch", "GET"] and len(parts) > 5 and "/-/" in parts[5]:
            self.fetched += 1
        return line

    def detail(self) -> str:
        return f"{count(self.fetched)}/{count(self.total)} packages fetched"


@dataclass
class Apt:
    """apt-get with `-o APT::Status-Fd=1`: `dlstatus:N:PCT:text` while downloading,
    `pmstatus:PKG:PCT:text` while installing; `Get:N` lines of `apt-get update`."""

    phase: str = ""
    percent: float = 0.0
    said: str = ""
    lists: int = 0

    def feed(self, line: str, *, stderr: bool = False) -> str:
        text = line.rstrip("\n")
        kind, _, rest = text.partition(":")
        if kind in {"dlstatus", "pmstatus"}:
            fields = rest.split(":", 2)
            if len(fields) == 3:
                try:
                    self.percent = float(fields[1])
                except ValueError:
                    return ""
                self.phase = "downloading" if kind == "dlstatus" else "installing"
                self.said = fields[2]
            return ""  # machine lines stay out of the log
        if text.startswith(("Get:", "Hit:")):
            self.lists += 1
        return line

    def detail(self) -> str:
        if self.phase:
            return f"{self.phase} {self.percent:.0f}%: {self.said}"
        return f"{count(self.lists)} package lists read" if self.lists else ""


def npm_reader_for(lock_text: str) -> Npm:
    return Npm(total=npm_lock_packages(json.loads(lock_text)))
