"""Where the real Kafka, PostgreSQL and Redis for the tests come from.

In order: URLs given in the environment (FLAGS_PG_ADMIN_URL, FLAGS_KAFKA_BOOTSTRAP,
FLAGS_REDIS_URL, all three); containers from testcontainers when a Docker
engine answers; otherwise the servers `scripts/stack` installs and starts here.

Kafka also has a SASL_PLAINTEXT listener with SCRAM-SHA-256 logins (the transport
security tests): `scripts/stack` and the container here set one up; servers from the
environment name theirs with FLAGS_KAFKA_SASL_BOOTSTRAP (and FLAGS_KAFKA_SCRAM_USER,
FLAGS_KAFKA_SCRAM_PASSWORD unless they are flags / flags-secret), as `scripts/stack env` prints.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
SCRAM_USER = "flags"
SCRAM_PASSWORD = "flags-secret"


@dataclass(frozen=True)
class Servers:
    pg_admin_url: str
    kafka_bootstrap: str
    redis_url: str
    origin: str
    kafka_sasl_bootstrap: str | None = None  # SASL_PLAINTEXT + SCRAM-SHA-256; None: not provided
    kafka_sasl_username: str = SCRAM_USER
    kafka_sasl_password: str = SCRAM_PASSWORD

    @property
    def pg_host(self) -> str:
        return urlsplit(self.pg_admin_url).hostname or "127.0.0.1"

    @property
    def pg_port(self) -> int:
        return urlsplit(self.pg_admin_url).port or 5432


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@contextmanager
def real_servers() -> Iterator[Servers]:
    names = ("FLAGS_PG_ADMIN_URL", "FLAGS_KAFKA_BOOTSTRAP", "FLAGS_REDIS_URL")
    if all(os.environ.get(n) for n in names):
        yield Servers(
            *(os.environ[n] for n in names),
            origin="environment",
            kafka_sasl_bootstrap=os.environ.get("FLAGS_KAFKA_SASL_BOOTSTRAP") or None,
            kafka_sasl_username=os.environ.get("FLAGS_KAFKA_SCRAM_USER") or SCRAM_USER,
            kafka_sasl_password=os.environ.get("FLAGS_KAFKA_SCRAM_PASSWORD") or SCRAM_PASSWORD,
        )
    elif docker_available():
        with _containers() as servers:
            yield servers
    else:
        yield _local_stack()


def _local_stack() -> Servers:
    subprocess.run(["bash", str(REPO / "scripts" / "stack"), "start"], check=True, stdin=subprocess.DEVNULL)
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "stack"), "env"], check=True, capture_output=True, text=True
    ).stdout
    env = dict(
        line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line
    )
    return Servers(
        env["FLAGS_PG_ADMIN_URL"],
        env["FLAGS_KAFKA_BOOTSTRAP"],
        env["FLAGS_REDIS_URL"],
        origin="scripts/stack",
        kafka_sasl_bootstrap=env["FLAGS_KAFKA_SASL_BOOTSTRAP"],
        kafka_sasl_username=env["FLAGS_KAFKA_SCRAM_USER"],
        kafka_sasl_password=env["FLAGS_KAFKA_SCRAM_PASSWORD"],
    )


@contextmanager
def _containers() -> Iterator[Servers]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    with ExitStack() as stack:
        pg = stack.enter_context(PostgresContainer("postgres:16", username="postgres", password="postgres"))
        redis = stack.enter_context(RedisContainer("redis:7"))
        kafka = DockerContainer("apache/kafka:4.1.1").with_bind_ports(9092, 59192).with_bind_ports(9094, 59194)
        for key, value in {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093,SASL_PLAINTEXT://:9094",
            "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:59192,SASL_PLAINTEXT://localhost:59194",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
            "KAFKA_SASL_ENABLED_MECHANISMS": "SCRAM-SHA-256",
            # The image's configure script refuses a SASL listener when KAFKA_OPTS is empty (it expects
            # a JAAS file there); the JAAS config is per listener below, so any harmless option will do.
            "KAFKA_OPTS": "-Djava.awt.headless=true",
            # The image maps env names to properties: "_" -> ".", "__" -> "_", "___" -> "-".
            "KAFKA_LISTENER_NAME_SASL__PLAINTEXT_SCRAM___SHA___256_SASL_JAAS_CONFIG": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        }.items():
            kafka = kafka.with_env(key, value)
        stack.enter_context(kafka)
        wait_for_logs(kafka, "Kafka Server started", timeout=60)
        _add_scram_user(kafka, SCRAM_USER, SCRAM_PASSWORD)
        pg_url = pg.get_connection_url(driver=None).replace("postgresql+psycopg2", "postgresql")
        redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        yield Servers(
            pg_url, "localhost:59192", redis_url, origin="testcontainers", kafka_sasl_bootstrap="localhost:59194"
        )


def _add_scram_user(kafka: Any, user: str, password: str) -> None:
    """SCRAM credentials live in the cluster metadata: set them through the running broker."""
    command = [
        "/opt/kafka/bin/kafka-configs.sh", "--bootstrap-server", "localhost:9092", "--alter",
        "--add-config", f"SCRAM-SHA-256=[iterations=8192,password={password}]",
        "--entity-type", "users", "--entity-name", user,
    ]  # fmt: skip
    code, output = kafka.exec(command)
    if code != 0:
        raise RuntimeError(f"cannot create the Kafka SCRAM user {user!r}: {output.decode(errors='replace')}")
