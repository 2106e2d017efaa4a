"""Prometheus from Debian's packages, scraping lineage-hub's own services on loopback.

The "lineage-hub itself" dashboard reads the gateway's, the consumers' and the
operator's /metrics through Prometheus; in a cluster the chart's Prometheus finds the
pods, here this one scrapes the stack's ports for them. Its targets are a file
(`targets.json`, Prometheus's file service discovery, re-read when it changes), so
another lineage-hub process on loopback can be scraped beside them by adding a
target to it (`add_target`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stack import paths, ports
from stack.piece import Launch, Piece, http_ok
from stack.pieces._apt import apt_install

#: The job scraping lineage-hub, and its port names (each serves /metrics).
JOB = "lineage-hub"
SCRAPED = {
    "gateway": "gateway",
    "consume-lineage": "consume-lineage",
    "consume-otel": "consume-otel",
    "operator": "operator-metrics",
}
SCRAPE_INTERVAL_S = 2


def url() -> str:
    return f"http://127.0.0.1:{ports.port('prometheus')}"


def config_dir() -> Path:
    return paths.state_dir() / "prometheus"


def targets_file() -> Path:
    return config_dir() / "targets.json"


def _group(service: str, address: str) -> dict[str, object]:
    return {"targets": [address], "labels": {"service": service}}


def add_target(service: str, address: str) -> None:
    """Scrape `address` (host:port of a /metrics) too, labelled `service`."""
    groups = json.loads(targets_file().read_text())
    groups.append(_group(service, address))
    tmp = targets_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(targets_file())  # whole, as the watcher reads it


class Prometheus(Piece):
    name = "prometheus"
    port_names = ("prometheus",)
    ready_timeout = 60.0
    first_build = "Prometheus from Debian's packages (~1 min)"

    @property
    def version(self) -> str:  # type: ignore[override]
        return "debian"

    def built(self) -> bool:
        return shutil.which("prometheus") is not None

    def build(self) -> None:
        if self.built():
            return
        apt_install(self.name, "prometheus", "Prometheus", self.built)

    def prepare(self) -> None:
        folder = config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        groups = [_group(s, f"127.0.0.1:{ports.port(p)}") for s, p in SCRAPED.items()]
        targets_file().write_text(json.dumps(groups))
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
            },
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "metrics_path": "/metrics",
                    "file_sd_configs": [{"files": [str(targets_file())]}],
                }
            ],
        }
        # JSON is YAML: Prometheus reads this file as it is.
        (folder / "prometheus.yml").write_text(json.dumps(config, indent=2))

    def command(self) -> Launch:
        folder = config_dir()
        return Launch(
            argv=[
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.data}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address=127.0.0.1:{self.ports[0]}",
            ],
            cwd=folder,
        )

    def ready(self) -> bool:
        return http_ok(f"{url()}/-/ready", timeout=1.0)

    def env(self) -> dict[str, str]:
        return {"PROMETHEUS_URL": url()}
