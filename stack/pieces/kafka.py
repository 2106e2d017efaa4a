"""Apache Kafka 4.x in KRaft combined mode (one node is broker and controller).

The jars come from Maven Central through a pom we own (`stack/maven/kafka`),
copied into the cache by `mvn dependency:copy-dependencies`. The broker runs
as `java -cp 'lib/*' kafka.Kafka server.properties`; storage is formatted once
with `kafka.tools.StorageTool`. After start-up the stack's topics are created.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from lineagehub.topics import ALL_TOPICS, PARTITIONS
from stack import paths, ports
from stack.errors import StackError
from stack.piece import Launch, port_open, run_step
from stack.pieces._maven import MavenServer

KAFKA_VERSION = "4.2.0"
NODE_ID = 1

MAVEN_DIR = paths.REPO_ROOT / "stack" / "maven" / "kafka"
POM = MAVEN_DIR / "pom.xml"
LOG4J_CONFIG = MAVEN_DIR / "log4j2.xml"

# Kafka error codes that mean "the topic is there", for idempotent creation.
_TOPIC_ALREADY_EXISTS = 36


def bootstrap() -> str:
    """This stack's broker, as clients name it."""
    return f"127.0.0.1:{ports.port('kafka')}"


def _server_properties(log_dir: Path) -> str:
    controller = ports.port("kafka-controller")
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://{bootstrap()},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://{bootstrap()}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(PARTITIONS),
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A laptop-sized broker: few threads, small segments, quick shutdown.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.retention.hours": "24",
        "controlled.shutdown.enable": "true",
    }
    lines = ["# Written by the lineage-hub local stack; rewritten on every start."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids that look like flags
            return text


class Kafka(MavenServer):
    name = "kafka"
    version = KAFKA_VERSION
    pom = POM
    version_property = "kafka.version"
    main_jar = "kafka_2.13-{version}.jar"
    port_names = ("kafka", "kafka-controller")
    ready_timeout = 120.0
    stop_timeout = 30.0
    first_build = "Kafka's jars from Maven Central (~1.5 min, while the control plane compiles)"

    # -- where things live -------------------------------------------------
    @property
    def lib(self) -> Path:
        return self.home / "lib"

    @property
    def config_dir(self) -> Path:
        return paths.state_dir() / "kafka"

    @property
    def properties(self) -> Path:
        return self.config_dir / "server.properties"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.lib}/*",
            main,
            *args,
        ]

    # -- contract -----------------------------------------------------------
    def prepare(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(_server_properties(self.data))
        id_file = self.config_dir / "cluster.id"
        if not id_file.is_file():
            id_file.write_text(_new_cluster_id() + "\n")
        cluster_id = id_file.read_text().strip()
        if (self.data / "meta.properties").is_file():
            return  # formatted before; skip a JVM start (--ignore-formatted would no-op)
        # --ignore-formatted makes this a no-op on a formatted log dir; with
        # controller.quorum.voters set, neither --standalone nor
        # --initial-controllers is wanted (static quorum).
        run_step(
            self.name,
            "formatting KRaft storage",
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(self.properties),
                "--ignore-formatted",
            ),
            self.log,
        )

    def command(self) -> Launch:
        return Launch(
            argv=self._java("kafka.Kafka", str(self.properties)),
            cwd=self.config_dir,
        )

    def ready(self) -> bool:
        return all(port_open(p) for p in self.ports)

    def after_ready(self) -> None:
        asyncio.run(ensure_topics(bootstrap(), ALL_TOPICS, PARTITIONS))

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP": bootstrap()}


async def ensure_topics(
    bootstrap: str, topics: tuple[str, ...], partitions: int, wait_s: float = 60.0
) -> None:
    """Create the topics that are missing (idempotent); retry while the broker warms up."""
    deadline = time.monotonic() + wait_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                response: Any = await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
                failures = [
                    f"{err[0]}: error {err[1]} {err[2] if len(err) > 2 else ''}".strip()
                    for err in response.topic_errors
                    if err[1] not in (0, _TOPIC_ALREADY_EXISTS)
                ]
                if failures:
                    raise StackError("kafka", "creating topics failed: " + "; ".join(failures))
            described = await admin.describe_topics(list(topics))
            short = [d["topic"] for d in described if len(d.get("partitions", [])) < partitions]
            if not short:
                return
            last_error = StackError("kafka", f"topics not ready yet: {short}")
        except StackError:
            raise
        except Exception as exc:  # the broker may still be electing itself
            last_error = exc
        finally:
            await admin.close()
        await asyncio.sleep(1.0)
    raise StackError(
        "kafka",
        f"topics were not created within {wait_s:.0f}s: {last_error}",
        paths.log_path("kafka"),
    )
