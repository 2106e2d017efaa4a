"""Fetch a Java server's jars from Maven Central through a pom we own.

The pom under `stack/maven/<name>/` lists the server artifact (its version a
property); `mvn -B dependency:copy-dependencies` resolves the runtime closure (its transfer
log, one line per artifact downloaded, is the step's progress) into
`<cache>/<name>-<version>/lib`. A marker holding a hash of the pom makes a
complete lib dir a cache hit; a failed fetch never leaves a half lib dir, and two
stacks fetching the same jars at once take turns (the second finds them fetched).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from stack import paths
from stack.errors import StackError
from stack.piece import Piece, build_lock, build_log, content_key, run_step
from stack.toolstreams import Maven


def is_fetched(pom: Path, version: str, home: Path) -> bool:
    """The lib dir is complete for this pom and version."""
    marker = home / ".complete"
    key = content_key(pom, extra=version)
    return marker.is_file() and marker.read_text().strip() == key and (home / "lib").is_dir()


def copy_dependencies(
    piece: str, pom: Path, *, version_property: str, version: str, home: Path, main_jar: str
) -> Path:
    """Resolve `pom` into `home/lib` unless already complete; returns the lib dir."""
    lib = home / "lib"
    if is_fetched(pom, version, home):
        return lib
    with build_lock(home.name):
        # Checked again under the lock: another stack may have fetched them meanwhile.
        if not is_fetched(pom, version, home):
            _fetch(
                piece,
                pom,
                version_property=version_property,
                version=version,
                home=home,
                main_jar=main_jar,
            )
    return lib


def _fetch(
    piece: str, pom: Path, *, version_property: str, version: str, home: Path, main_jar: str
) -> None:
    lib = home / "lib"
    marker = home / ".complete"
    key = content_key(pom, extra=version)
    home.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    staging = home / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    run_step(
        piece,
        f"fetching {pom.parent.name} {version} jars from Maven Central (mvn -f {pom})",
        [
            "mvn",
            "-B",  # batch mode still logs each transfer: the reader counts them
            "-U",  # retry artifacts an earlier run found missing
            "-f",
            str(pom),
            f"-D{version_property}={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        build_log(piece),
        reader=Maven(),
    )
    if not (staging / main_jar).is_file():
        raise StackError(piece, f"Maven finished but {main_jar} is missing", build_log(piece))
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    marker.write_text(key + "\n")


class MavenServer(Piece):
    """A Java server whose build is fetching its jars through the pom we own for it."""

    pom: ClassVar[Path]
    version_property: ClassVar[str]
    #: The server's own jar, with `{version}` in it: the proof a fetch completed.
    main_jar: ClassVar[str]

    @property
    def home(self) -> Path:
        return paths.cache_dir() / f"{self.name}-{self.version}"

    def built(self) -> bool:
        return is_fetched(self.pom, self.version, self.home)

    def fetch(self) -> None:
        self.build()  # the jars are the whole build

    def build(self) -> None:
        copy_dependencies(
            self.name,
            self.pom,
            version_property=self.version_property,
            version=self.version,
            home=self.home,
            main_jar=self.main_jar.format(version=self.version),
        )
