"""Jaeger v2 (an OpenTelemetry Collector distribution) built from its Go module.

The module path has no `/v2`, so the v2 releases are reached through their
twin v1 tags (v1.76.0 is the release pinned in `stack/gotools/jaeger`).
Spans arrive over OTLP (gRPC and HTTP) and from the `otel-spans` Kafka topic,
and are kept in memory; the query API and UI listen on the stack's `jaeger-query`
port (16686 in the first stack, `stack/ports.py`).

A plain `go build` embeds Jaeger's placeholder UI page, not the real UI (the
real assets are built with npm from a git submodule the module zip lacks);
the query API (`/api/...`) is complete.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lineagehub.topics import SPANS_TOPIC
from stack import paths, ports
from stack.piece import Launch, Piece, http_ok
from stack.pieces._gobuild import binary_path, go_build, go_fetch, is_built
from stack.pieces.kafka import bootstrap

JAEGER_VERSION = "v1.76.0"
PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"
CONSUMER_GROUP = "jaeger"
STORE = "memstore"


def _loopback(port_name: str) -> str:
    return f"127.0.0.1:{ports.port(port_name)}"


def query_url() -> str:
    return f"http://{_loopback('jaeger-query')}"


def jaeger_config() -> dict[str, object]:
    """The collector-style config; every key checked against the v1.76.0 sources."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp", "kafka"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {
                    "level": "basic",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {
                                        "host": "127.0.0.1",
                                        "port": ports.port("jaeger-metrics"),
                                    }
                                }
                            }
                        }
                    ],
                },
                "logs": {"level": "info"},
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {STORE: {"memory": {"max_traces": 100_000}}}},
            "jaeger_query": {
                "storage": {"traces": STORE},
                "http": {"endpoint": _loopback("jaeger-query")},
                "grpc": {"endpoint": _loopback("jaeger-query-grpc")},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": _loopback("jaeger-otlp-grpc")},
                    "http": {"endpoint": _loopback("jaeger-otlp-http")},
                }
            },
            "kafka": {
                "brokers": [bootstrap()],
                "client_id": "jaeger",
                "group_id": CONSUMER_GROUP,
                "initial_offset": "earliest",
                "traces": {"topic": SPANS_TOPIC, "encoding": "otlp_proto"},
            },
        },
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": STORE}},
    }


class Jaeger(Piece):
    name = "jaeger"
    version = JAEGER_VERSION
    port_names = ("jaeger-otlp-grpc", "jaeger-otlp-http", "jaeger-query")
    ready_timeout = 60.0
    first_build = "Jaeger from its Go module (608 CPU s: ~5 min on two idle cores)"

    def built(self) -> bool:
        return is_built(self.name, self.version, "-s -w")

    @property
    def binary(self) -> Path:
        return binary_path(self.name, self.version)

    @property
    def config_file(self) -> Path:
        return paths.state_dir() / "jaeger" / "config.yaml"

    def fetch(self) -> None:
        go_fetch(self.name, self.name, self.version, PACKAGE, "-s -w")

    def build(self) -> None:
        go_build(self.name, self.name, self.version, PACKAGE, "-s -w")

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        header = "# Written by the lineage-hub local stack; rewritten on every start.\n"
        self.config_file.write_text(header + yaml.safe_dump(jaeger_config(), sort_keys=False))

    def command(self) -> Launch:
        return Launch(
            argv=[str(self.binary), "--config", str(self.config_file)],
            cwd=self.config_file.parent,
        )

    def ready(self) -> bool:
        return http_ok(f"{query_url()}/api/services", timeout=1.0)

    def env(self) -> dict[str, str]:
        return {
            "JAEGER_QUERY_URL": query_url(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{_loopback('jaeger-otlp-grpc')}",
            "JAEGER_OTLP_HTTP_ENDPOINT": f"http://{_loopback('jaeger-otlp-http')}",
        }
