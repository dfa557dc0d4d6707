"""The SDK's settings: the services' `FLAGS_*` environment configures it, and it holds none of their secrets."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from flaglog.connection import KafkaConnection, client_options
from flagsdk import FlagClient, SdkSettings
from services.infra.settings import Settings
from tests.support.processes import settings_env

SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "flags", "kafka_sasl_password": "kpw-1"}


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A services' environment (SASL, non-default query address and passwords), exported as `FLAGS_*`."""
    services = Settings(**SASL, query_host="flags-query.internal", query_port=9082, pg_password_flags_query="qpw-1")
    for name in [n for n in os.environ if n.startswith("FLAGS_")]:
        monkeypatch.delenv(name)
    for name, value in settings_env(services).items():
        if name.startswith("FLAGS_"):
            monkeypatch.setenv(name, value)
    return services


def test_the_services_environment_configures_the_sdk_the_same_way(deployment: Settings) -> None:
    sdk = SdkSettings()
    assert client_options(sdk) == client_options(deployment)
    assert sdk.query_base_url == "http://flags-query.internal:9082"


def test_the_sdk_holds_the_kafka_connection_and_the_query_address_only(deployment: Settings) -> None:
    own = set(SdkSettings.model_fields) - set(KafkaConnection.model_fields)
    assert own == {"query_url", "query_host", "query_port"}
    shown = repr(SdkSettings()) + str(SdkSettings())
    assert "qpw-1" not in shown and "kpw-1" not in shown


def test_an_explicit_query_url_wins(deployment: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGS_QUERY_URL", "https://flags.example")
    assert SdkSettings().query_base_url == "https://flags.example"


def test_from_env_builds_the_client_the_environment_describes(deployment: Settings) -> None:
    client = FlagClient.from_env(api_key="k", org_id="acme")
    assert client._query_url == "http://flags-query.internal:9082"
    assert client._kafka == client_options(deployment)


def test_the_sdk_refuses_what_the_services_refuse() -> None:
    with pytest.raises(ValidationError, match="needs kafka_sasl_username and kafka_sasl_password"):
        SdkSettings(kafka_security_protocol="SASL_SSL")
