"""ClickHouse, embedded in-process through chdb. Not a server.

Where no ClickHouse server runs, the OTel consumer and the tests open a chdb
session on this directory and speak the same SQL; the env tells them where.
"""

from __future__ import annotations

from pathlib import Path

from stack import paths
from stack.errors import StackError
from stack.piece import Launch, Piece


class ChdbStore(Piece):
    name = "chdb"
    server = False

    @property
    def path(self) -> Path:
        return paths.state_dir() / "data" / "clickhouse"

    @property
    def version(self) -> str:  # type: ignore[override]
        try:
            import chdb
        except ImportError:
            return ""
        return str(getattr(chdb, "__version__", ""))

    def build(self) -> None:
        try:
            import chdb  # noqa: F401
        except ImportError as exc:
            raise StackError(
                self.name, f"chdb is not importable ({exc}); install the project: pip install -e ."
            ) from exc

    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def command(self) -> Launch:
        raise StackError(self.name, "chdb is embedded in-process, not a server")

    def ready(self) -> bool:
        return self.path.is_dir()

    def env(self) -> dict[str, str]:
        return {"CLICKHOUSE_BACKEND": "chdb", "CLICKHOUSE_CHDB_PATH": str(self.path)}
