"""Transport security on the real servers: the whole pipeline over Kafka SASL/SCRAM, and what is refused.

The servers provide a SASL_PLAINTEXT listener with SCRAM-SHA-256 logins (`Servers.kafka_sasl_bootstrap`):
`scripts/stack` and the testcontainers broker set one up; servers from the environment name theirs
with FLAGS_KAFKA_SASL_BOOTSTRAP. There is no skip: without such a listener these tests fail and say why.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from flaglog.connection import client_options
from services.infra.kafka import create_producer
from services.infra.settings import PgSslMode, Role, Settings
from tests.support.http_flows import KEY, answer, ensure_flag, put, wait_for
from tests.support.servers import Servers
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration

CONNECT_BOUND = 15.0  # seconds: a refused client must fail within this, not hang or retry forever


@pytest.fixture(scope="module")
def scram(servers: Servers) -> Servers:
    if servers.kafka_sasl_bootstrap is None:
        pytest.fail(
            f"the Kafka from {servers.origin} has no SASL_PLAINTEXT/SCRAM-SHA-256 listener named: set "
            "FLAGS_KAFKA_SASL_BOOTSTRAP (and FLAGS_KAFKA_SCRAM_USER, FLAGS_KAFKA_SCRAM_PASSWORD), "
            "as `scripts/stack env` prints"
        )
    return servers


def over_scram(base: Settings, servers: Servers, **overrides: object) -> Settings:
    """`base` (database, Redis) with Kafka reached through the SCRAM listener, on topics of its own."""
    return Settings(
        **{
            **base.model_dump(),
            "kafka_bootstrap": servers.kafka_sasl_bootstrap,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-256",
            "kafka_sasl_username": servers.kafka_sasl_username,
            "kafka_sasl_password": servers.kafka_sasl_password,
            # New names: the services themselves create these topics, over SASL.
            "topic": f"{base.topic}.scram",
            "dead_letter_topic": f"{base.dead_letter_topic}.scram",
            "projector_group": f"{base.projector_group}-scram",
            **overrides,
        }
    )


def test_a_change_travels_the_whole_pipeline_over_scram(
    make_settings: Callable[[], Settings], scram: Servers, tmp_path: Path
) -> None:
    settings = over_scram(make_settings(), scram)
    stack = start_stack(settings, tmp_path)
    try:
        with httpx.Client(timeout=10, headers=stack.headers) as http:
            ensure_flag(http, stack)
            org_id = f"org-{uuid.uuid4().hex[:12]}"
            changed = put(http, f"{stack.command_url}/v1/orgs/{org_id}/flags/{KEY}", enabled=True)
            url = f"{stack.query_url}/v1/orgs/{org_id}/flags/{KEY}"
            wait_for(lambda: answer(http, url).get("level") == "org", timeout=30, what="the change over SASL")
            got = answer(http, url)
        assert got["value"] is True
        assert got["event"]["id"] == changed["events"][0]["event_id"]
        assert asyncio.run(_count_records(settings)) >= 2  # the definition and the override, on the SASL topic
    finally:
        stack.stop()
    password = settings.kafka_sasl_password
    assert password is not None
    for service in (stack.command, stack.projector, stack.query):
        assert password.get_secret_value() not in service.log_path.read_text(errors="replace"), service.name


async def _count_records(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(
        settings.topic, **client_options(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("overrides", "error", "detail"),
    [
        ({"kafka_sasl_password": "not-the-password"}, SaslAuthenticationFailed, "invalid credentials"),
        ({"kafka_sasl_mechanism": "SCRAM-SHA-512"}, UnsupportedSaslMechanismError, "[Error 33]"),
    ],
    ids=["wrong-password", "mechanism-not-enabled"],
)
async def test_a_producer_that_cannot_authenticate_fails_promptly(
    settings: Settings,
    scram: Servers,
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, str],
    error: type[Exception],
    detail: str,
) -> None:
    producer = create_producer(over_scram(settings, scram, **overrides))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        try:
            await asyncio.wait_for(producer.start(), CONNECT_BOUND)
        finally:
            await producer.stop()
    assert time.monotonic() - started < CONNECT_BOUND
    # aiokafka reports why the bootstrap failed in the log record, with the broker's error as an argument.
    causes = [arg for record in caplog.records for arg in (record.args or ()) if isinstance(arg, Exception)]
    assert any(isinstance(cause, error) and detail in str(cause) for cause in causes), causes


async def test_a_plaintext_client_is_refused_on_the_sasl_listener(settings: Settings, scram: Servers) -> None:
    assert scram.kafka_sasl_bootstrap is not None
    plaintext = settings.model_copy(update={"kafka_bootstrap": scram.kafka_sasl_bootstrap})
    producer = create_producer(plaintext)
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        try:
            await asyncio.wait_for(producer.start(), CONNECT_BOUND)
        finally:
            await producer.stop()
    assert time.monotonic() - started < CONNECT_BOUND


async def test_pg_sslmode_decides_whether_the_connection_is_encrypted(settings: Settings) -> None:
    admin = await asyncpg.connect(settings.pg_admin_dsn())
    try:
        server_offers_tls = await admin.fetchval("SHOW ssl") == "on"
    finally:
        await admin.close()

    async def encrypted(mode: PgSslMode) -> bool:
        conn = await asyncpg.connect(settings.model_copy(update={"pg_sslmode": mode}).pg_dsn(Role.QUERY))
        try:
            return bool(await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
        finally:
            await conn.close()

    assert await encrypted(PgSslMode.DISABLE) is False
    assert await encrypted(PgSslMode.PREFER) is server_offers_tls
    if server_offers_tls:
        assert await encrypted(PgSslMode.REQUIRE) is True
    else:
        with pytest.raises(ConnectionError, match="rejected SSL upgrade"):
            await encrypted(PgSslMode.REQUIRE)
