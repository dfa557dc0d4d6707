"""Every entry point follows the ports the local stack was started on (FLAGS_PG_PORT, FLAGS_KAFKA_PORT, ...).

`scripts/stack` and `scripts/services` read them; the services' settings, the SDK's Kafka connection and
`flagctl` must reach the same servers from a shell that set only the ports, not the URLs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flagctl.main import build_parser
from flaglog.connection import LOCAL_KAFKA_PORT, KafkaConnection
from services.infra.settings import LOCAL_PG_PORT, LOCAL_REDIS_PORT, Role, Settings

ROOT = Path(__file__).resolve().parents[2]
URLS = ("FLAGS_PG_ADMIN_URL", "FLAGS_REDIS_URL", "FLAGS_KAFKA_BOOTSTRAP", "FLAGS_COMMAND_URL", "FLAGS_QUERY_URL")


def _script_default(script: str, variable: str) -> int:
    found = re.search(rf"\${{{variable}:-(\d+)}}", (ROOT / "scripts" / script).read_text())
    assert found, f"scripts/{script} reads {variable} with a default"
    return int(found.group(1))


def test_the_defaults_are_the_scripts_defaults() -> None:
    assert _script_default("stack", "FLAGS_PG_PORT") == LOCAL_PG_PORT
    assert _script_default("stack", "FLAGS_REDIS_PORT") == LOCAL_REDIS_PORT
    assert _script_default("stack", "FLAGS_KAFKA_PORT") == LOCAL_KAFKA_PORT
    assert _script_default("services", "FLAGS_COMMAND_PORT") == Settings.model_fields["command_port"].default
    assert _script_default("services", "FLAGS_QUERY_PORT") == Settings.model_fields["query_port"].default


def test_a_shell_that_set_only_the_ports_reaches_the_stack_from_every_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in URLS:
        monkeypatch.delenv(name, raising=False)
    ports = {"FLAGS_PG_PORT": "15432", "FLAGS_REDIS_PORT": "16379", "FLAGS_KAFKA_PORT": "19092",
             "FLAGS_COMMAND_PORT": "18081", "FLAGS_QUERY_PORT": "18082"}
    for name, value in ports.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.pg_port == 15432 and "@127.0.0.1:15432/" in settings.pg_dsn(Role.QUERY)
    assert settings.pg_admin_url.endswith("@127.0.0.1:15432/postgres")
    assert settings.redis_url == "redis://127.0.0.1:16379/0"
    assert settings.kafka_bootstrap == KafkaConnection().kafka_bootstrap == "127.0.0.1:19092"
    args = build_parser().parse_args(["flags"])
    assert (args.command_url, args.query_url) == ("http://127.0.0.1:18081", "http://127.0.0.1:18082")


def test_a_url_named_outright_wins_over_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGS_KAFKA_PORT", "19092")
    monkeypatch.setenv("FLAGS_KAFKA_BOOTSTRAP", "kafka.internal:9092")
    monkeypatch.setenv("FLAGS_COMMAND_PORT", "18081")
    monkeypatch.setenv("FLAGS_COMMAND_URL", "https://flags.example")
    assert Settings().kafka_bootstrap == "kafka.internal:9092"
    assert build_parser().parse_args(["flags"]).command_url == "https://flags.example"
