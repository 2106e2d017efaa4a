"""Marquez, the OpenLineage metadata server, on the stack's PostgreSQL.

The API server (`io.github.marquezproject:marquez-api`) and its runtime jars
come from Maven Central through a pom we own (`stack/maven/marquez`) and run
as `java -cp 'lib/*' marquez.MarquezApp server marquez.yml` (Dropwizard).
It migrates its schema on start-up into the `marquez` database that the
postgres piece creates.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from stack import paths, ports
from stack.piece import Launch, http_ok
from stack.pieces import postgres
from stack.pieces._maven import MavenServer

MARQUEZ_VERSION = "0.50.0"
POM = paths.REPO_ROOT / "stack" / "maven" / "marquez" / "pom.xml"


def api_url() -> str:
    return f"http://127.0.0.1:{ports.port('marquez')}"


def marquez_config() -> dict[str, object]:
    def connector(port_name: str) -> list[dict[str, object]]:
        return [{"type": "http", "port": ports.port(port_name), "bindHost": "127.0.0.1"}]

    return {
        "server": {
            "applicationConnectors": connector("marquez"),
            "adminConnectors": connector("marquez-admin"),
        },
        "db": {
            "driverClass": "org.postgresql.Driver",
            "url": f"jdbc:postgresql://127.0.0.1:{postgres.port()}/{postgres.MARQUEZ_DB}",
            "user": postgres.MARQUEZ_USER,
            "password": postgres.MARQUEZ_PASSWORD,
        },
        "migrateOnStartup": True,
        "search": {"enabled": False},
        "logging": {"level": "INFO", "appenders": [{"type": "console"}]},
    }


class Marquez(MavenServer):
    name = "marquez"
    version = MARQUEZ_VERSION
    pom = POM
    version_property = "marquez.version"
    main_jar = "marquez-api-{version}.jar"
    port_names = ("marquez", "marquez-admin")
    ready_timeout = 180.0  # first start runs the Flyway migrations
    first_build = "Marquez's jars from Maven Central (~1 min)"

    @property
    def config_file(self) -> Path:
        return paths.state_dir() / "marquez" / "marquez.yml"

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        header = "# Written by the lineage-hub local stack; rewritten on every start.\n"
        self.config_file.write_text(header + yaml.safe_dump(marquez_config(), sort_keys=False))

    def command(self) -> Launch:
        return Launch(
            argv=[
                "java",
                "-Xms128m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-cp",
                f"{self.home / 'lib'}/*",
                "marquez.MarquezApp",
                "server",
                str(self.config_file),
            ],
            cwd=self.config_file.parent,
        )

    def ready(self) -> bool:
        admin = f"http://127.0.0.1:{ports.port('marquez-admin')}"
        return http_ok(f"{admin}/healthcheck") and http_ok(f"{api_url()}/api/v1/namespaces")

    def env(self) -> dict[str, str]:
        return {"MARQUEZ_URL": api_url()}
