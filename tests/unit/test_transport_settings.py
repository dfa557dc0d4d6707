"""Transport security settings: what each client is given, what is refused, what never prints."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import certifi
import pytest
from faststream.kafka.security import parse_security
from faststream.security import SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from flaglog.connection import client_options
from services.infra.kafka import broker_security
from services.infra.settings import Role, Settings
from tests.support.processes import settings_env

CA = certifi.where()  # any readable PEM bundle
SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "flags", "kafka_sasl_password": "pw-1"}


def test_defaults_are_what_every_service_ran_with_before(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("FLAGS_")]:  # e.g. a stack on other ports
        monkeypatch.delenv(name)
    s = Settings()
    assert client_options(s) == {"bootstrap_servers": "127.0.0.1:59092", "security_protocol": "PLAINTEXT"}
    assert broker_security(s) is None
    assert s.redis_options() == {}
    assert s.pg_dsn(Role.QUERY) == "postgresql://flags_query:flags_query@127.0.0.1:55432/flags?sslmode=prefer"


@pytest.mark.parametrize(
    ("overrides", "uses_tls", "sasl_class"),
    [
        ({**SASL}, False, SASLScram256),
        ({**SASL, "kafka_sasl_mechanism": "SCRAM-SHA-512"}, False, SASLScram512),
        ({**SASL, "kafka_sasl_mechanism": "PLAIN"}, False, SASLPlaintext),
        ({**SASL, "kafka_security_protocol": "SASL_SSL", "kafka_ssl_cafile": CA}, True, SASLScram256),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": CA}, True, None),
        ({"kafka_security_protocol": "SSL"}, True, None),  # the system's CA store
    ],
)
def test_the_broker_and_the_plain_clients_get_the_same_security(
    overrides: dict[str, Any], uses_tls: bool, sasl_class: type | None
) -> None:
    s = Settings(**overrides)
    options = client_options(s)
    assert options["security_protocol"] == overrides["kafka_security_protocol"]
    assert isinstance(options.get("ssl_context"), ssl.SSLContext) is uses_tls
    if uses_tls:
        assert options["ssl_context"].check_hostname
        assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    if sasl_class is not None:
        assert options["sasl_mechanism"] == s.kafka_sasl_mechanism.value
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("flags", "pw-1")

    security = broker_security(s)
    assert security is not None
    if sasl_class is not None:
        assert type(security) is sasl_class
    # FastStream maps its security object back onto aiokafka's arguments: they must agree.
    mapped = parse_security(security)
    plain = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    assert {k: v for k, v in mapped.items() if k != "ssl_context"} == {
        k: v for k, v in plain.items() if k != "ssl_context"
    }
    assert isinstance(mapped.get("ssl_context"), ssl.SSLContext) is uses_tls


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs kafka_sasl_username and kafka_sasl_password"),
        ({**SASL, "kafka_sasl_password": None}, "needs kafka_sasl_username and kafka_sasl_password"),
        ({"kafka_sasl_username": "flags", "kafka_sasl_password": "pw-1"}, "does not authenticate"),
        ({"kafka_ssl_cafile": CA}, "does not use TLS"),
        ({**SASL, "kafka_ssl_cafile": CA}, "does not use TLS"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": CA}, "needs kafka_ssl_certfile"),
        ({"kafka_security_protocol": "SASL_SCRAM"}, "kafka_security_protocol"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"}, "kafka_ssl_cafile"),
        ({"pg_sslmode": "verify_full"}, "pg_sslmode"),
        ({"pg_sslrootcert": CA}, "never verifies the server"),
        ({"redis_ssl_ca_certs": CA}, "not rediss://"),
    ],
)
def test_settings_that_would_quietly_lower_security_are_refused(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**overrides)


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_every_sslmode_reaches_the_dsns(mode: str) -> None:
    rootcert = {"pg_sslrootcert": CA} if mode in ("require", "verify-ca", "verify-full") else {}
    s = Settings(pg_sslmode=mode, **rootcert)
    tail = f"?sslmode={mode}" + (f"&sslrootcert={CA.replace('/', '%2F')}" if rootcert else "")
    assert s.pg_dsn(Role.COMMAND).endswith(tail)
    assert s.pg_admin_dsn() == f"postgresql://postgres:postgres@127.0.0.1:55432/postgres{tail}"


def test_an_admin_url_that_names_its_own_sslmode_keeps_it() -> None:
    url = "postgresql://postgres:pw@db.internal:5432/postgres?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    assert Settings(pg_admin_url=url, pg_sslmode="disable").pg_admin_dsn() == url


def test_redis_gets_the_ca_bundle_for_rediss() -> None:
    s = Settings(redis_url="rediss://:pw@cache.internal:6380/0", redis_ssl_ca_certs=CA)
    assert s.redis_options() == {"ssl_ca_certs": CA}


def test_no_password_shows_in_repr_str_or_validation_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = ["kafka-pw-7", "pg-admin-pw-7", "redis-pw-7", "pg-owner-pw-7", "pg-query-pw-7"]
    s = Settings(
        **{**SASL, "kafka_sasl_password": secrets[0]},
        pg_admin_url=f"postgresql://postgres:{secrets[1]}@db:5432/postgres",
        redis_url=f"rediss://:{secrets[2]}@cache:6380/0",
        pg_password_flags_owner=secrets[3],
        pg_password_flags_query=secrets[4],
    )
    shown = repr(s) + str(s)
    assert not [secret for secret in secrets if secret in shown]
    assert "postgres:**********@db:5432" in shown and "rediss://:**********@cache:6380/0" in shown

    monkeypatch.setenv("FLAGS_KAFKA_SASL_PASSWORD", secrets[0])  # with PLAINTEXT: refused
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert secrets[0] not in str(refused.value)


def test_a_subprocess_gets_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(**SASL, pg_sslmode="verify-full", pg_sslrootcert=Path(CA))
    for name in [n for n in os.environ if n.startswith("FLAGS_")]:
        monkeypatch.delenv(name)
    for name, value in settings_env(s).items():
        if name.startswith("FLAGS_"):
            monkeypatch.setenv(name, value)
    assert Settings() == s
    assert "FLAGS_KAFKA_SSL_CAFILE" not in settings_env(s)  # unset stays unset, not "None"
