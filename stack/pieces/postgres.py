"""PostgreSQL from the Debian packages, with its own cluster in the state dir.

Marquez keeps its metadata here. The server binaries live off PATH in
`/usr/lib/postgresql/<major>/bin`; the newest installed major is used. initdb
and the server refuse to run as root, so under root both run as `postgres`.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from stack import paths, ports
from stack.errors import StackError
from stack.piece import Launch, Piece, run_step
from stack.pieces._apt import apt_install

PG_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"
MARQUEZ_DB = MARQUEZ_USER = MARQUEZ_PASSWORD = "marquez"

_BOOTSTRAP_SQL = f"""
SELECT 'CREATE ROLE {MARQUEZ_USER} LOGIN PASSWORD ''{MARQUEZ_PASSWORD}'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MARQUEZ_USER}')\\gexec
SELECT 'CREATE DATABASE {MARQUEZ_DB} OWNER {MARQUEZ_USER}'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{MARQUEZ_DB}')\\gexec
"""


def find_bin_dir() -> Path | None:
    """The bin dir of the newest installed PostgreSQL major with a server binary."""
    if not PG_ROOT.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for child in PG_ROOT.iterdir():
        if child.name.isdigit() and (child / "bin" / "postgres").is_file():
            found.append((int(child.name), child / "bin"))
    return max(found)[1] if found else None


def port() -> int:
    return ports.port("postgres")


class Postgres(Piece):
    name = "postgres"
    port_names = ("postgres",)
    ready_timeout = 60.0
    stop_timeout = 30.0
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client
    # (Marquez) to disconnect; SIGINT is its "fast" shutdown.
    stop_signal = signal.SIGINT

    @property
    def version(self) -> str:  # type: ignore[override]
        bin_dir = find_bin_dir()
        return bin_dir.parent.name if bin_dir else ""

    @property
    def run_as(self) -> str | None:
        return SERVICE_USER if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        return paths.state_dir() / "postgres-socket"

    def _bin(self, tool: str) -> str:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise StackError(self.name, f"no PostgreSQL server under {PG_ROOT}; run the build")
        return str(bin_dir / tool)

    def _as_service_user(self, argv: list[str]) -> list[str]:
        user = self.run_as
        return ["runuser", "-u", user, "--", *argv] if user else argv

    first_build = "PostgreSQL from Debian's packages (~1 min)"

    def built(self) -> bool:
        return find_bin_dir() is not None

    def build(self) -> None:
        if self.built():
            return
        apt_install(self.name, "postgresql", "PostgreSQL", self.built)

    def _hand_over(self, path: Path) -> None:
        """Make a dir of ours owned by the service user (when running as root)."""
        path.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)
            # The service user must be able to reach the dir through its parents.
            for parent in path.parents:
                if not parent.stat().st_mode & 0o001:
                    raise StackError(
                        self.name,
                        f"{parent} is not searchable by user {self.run_as}; "
                        "choose a state dir under a world-searchable path (LINEAGE_HUB_STATE)",
                    )

    def prepare(self) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.data)
        self.data.chmod(0o700)
        self._hand_over(self.socket_dir)
        if (self.data / "PG_VERSION").is_file():
            return
        run_step(
            self.name,
            "initdb",
            self._as_service_user(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SERVICE_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            ),
            self.log,
        )

    def command(self) -> Launch:
        return Launch(
            argv=[
                self._bin("postgres"),
                "-D",
                str(self.data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(port()),
                "-k",
                str(self.socket_dir),
                # A throwaway test cluster: durability against OS crashes is not needed.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=64MB",
                "-c",
                "max_connections=50",
            ],
            cwd=self.data,
            user=self.run_as,
        )

    def ready(self) -> bool:
        proc = subprocess.run(
            [self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port()), "-t", "1"],
            check=False,
        )
        return proc.returncode == 0

    def after_ready(self) -> None:
        run_step(
            self.name,
            "creating the marquez role and database",
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(port()),
                "-U",
                SERVICE_USER,
                "-d",
                "postgres",
            ],
            self.log,
            stdin=_BOOTSTRAP_SQL,
        )

    def env(self) -> dict[str, str]:
        return {
            "POSTGRES_URL": (
                f"postgresql://{MARQUEZ_USER}:{MARQUEZ_PASSWORD}@127.0.0.1:{port()}/{MARQUEZ_DB}"
            )
        }
