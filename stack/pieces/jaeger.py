"""Jaeger v2 (an OpenTelemetry Collector distribution) built from its Go module.

The module path has no `/v2`, so the v2 releases are reached through their
twin v1 tags (v1.76.0 is the release pinned in `stack/gotools/jaeger`).
Spans arrive over OTLP (gRPC and HTTP) and from the `otel-spans` Kafka topic,
and are kept in memory; the query API and UI listen on 16686.

A plain `go build` embeds Jaeger's placeholder UI page, not the real UI (the
real assets are built with npm from a git submodule the module zip lacks);
the query API (`/api/...`) is complete.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lineagehub.topics import SPANS_TOPIC
from stack import paths
from stack.piece import Launch, Piece, http_ok
from stack.pieces._gobuild import binary_path, go_build, is_built
from stack.pieces.kafka import BOOTSTRAP

JAEGER_VERSION = "v1.76.0"
PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
QUERY_HTTP_PORT = 16686
QUERY_GRPC_PORT = 16685
METRICS_PORT = 8888
QUERY_URL = f"http://127.0.0.1:{QUERY_HTTP_PORT}"
CONSUMER_GROUP = "jaeger"
STORE = "memstore"


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
                                    "prometheus": {"host": "127.0.0.1", "port": METRICS_PORT}
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
                "http": {"endpoint": f"127.0.0.1:{QUERY_HTTP_PORT}"},
                "grpc": {"endpoint": f"127.0.0.1:{QUERY_GRPC_PORT}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"127.0.0.1:{OTLP_HTTP_PORT}"},
                }
            },
            "kafka": {
                "brokers": [BOOTSTRAP],
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
    ports = (OTLP_GRPC_PORT, OTLP_HTTP_PORT, QUERY_HTTP_PORT)
    ready_timeout = 60.0
    first_build = "Jaeger from its Go module (~11 min)"

    def built(self) -> bool:
        return is_built(self.name, self.version, "-s -w")

    @property
    def binary(self) -> Path:
        return binary_path(self.name, self.version)

    @property
    def config_file(self) -> Path:
        return paths.state_dir() / "jaeger" / "config.yaml"

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
        return http_ok(f"{QUERY_URL}/api/services", timeout=1.0)

    def env(self) -> dict[str, str]:
        return {
            "JAEGER_QUERY_URL": QUERY_URL,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{OTLP_GRPC_PORT}",
            "JAEGER_OTLP_HTTP_ENDPOINT": f"http://127.0.0.1:{OTLP_HTTP_PORT}",
        }
