"""How a client reaches the Kafka cluster: the `FLAGS_KAFKA_*` settings and the aiokafka options they mean.

The services' `Settings` and the SDK's `SdkSettings` both extend `KafkaConnection`,
so one deployment's environment configures both, and `client_options` is the one
place that turns these settings into aiokafka's connection and security arguments.
Secrets never appear in `repr()` or in validation errors.
"""

from __future__ import annotations

import os
from enum import StrEnum
from ssl import SSLContext
from typing import Any, Self

from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["KafkaConnection", "KafkaSaslMechanism", "KafkaSecurityProtocol", "client_options"]


class KafkaSecurityProtocol(StrEnum):
    """aiokafka's `security_protocol`: TLS, SASL authentication, both, or neither."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (KafkaSecurityProtocol.SASL_PLAINTEXT, KafkaSecurityProtocol.SASL_SSL)


class KafkaSaslMechanism(StrEnum):
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    PLAIN = "PLAIN"


LOCAL_KAFKA_PORT = 59092  # scripts/stack's default (a unit test holds them equal)


def local_address(port_variable: str, default: int) -> str:
    """Where the local stack listens: 127.0.0.1 on the port `scripts/stack` reads from `port_variable`.

    So a shell that set FLAGS_KAFKA_PORT (or FLAGS_PG_PORT, FLAGS_REDIS_PORT) for the stack reaches it from
    every entry point (services, flagctl, the SDK) without naming the URLs as well.
    """
    return f"127.0.0.1:{os.environ.get(port_variable) or default}"


class KafkaConnection(BaseSettings):
    """The cluster's address and transport security (off by default, as on the local stack: PLAINTEXT)."""

    # hide_input_in_errors: a validation error must not print the passwords it was given.
    model_config = SettingsConfigDict(env_prefix="FLAGS_", frozen=True, hide_input_in_errors=True)

    kafka_bootstrap: str = Field(default_factory=lambda: local_address("FLAGS_KAFKA_PORT", LOCAL_KAFKA_PORT))
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: KafkaSaslMechanism = KafkaSaslMechanism.SCRAM_SHA_256
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: FilePath | None = None  # None with SSL: the system's CA store
    kafka_ssl_certfile: FilePath | None = None  # client certificate (mutual TLS), PEM
    kafka_ssl_keyfile: FilePath | None = None  # its private key, unless inside the certfile
    topic: str = "flags.changes"  # the flag-change topic: the log of record

    @model_validator(mode="after")
    def _kafka_settings_agree(self) -> Self:
        """Refuse combinations that would silently run with less security than asked for."""
        protocol = self.kafka_security_protocol
        if protocol.uses_sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(f"kafka_security_protocol={protocol} needs kafka_sasl_username and kafka_sasl_password")
        if not protocol.uses_sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(
                f"kafka_sasl_username/kafka_sasl_password are set but kafka_security_protocol={protocol} "
                "does not authenticate; use SASL_PLAINTEXT or SASL_SSL"
            )
        ssl_files = [
            name
            for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if ssl_files and not protocol.uses_tls:
            raise ValueError(
                f"{', '.join(ssl_files)} set but kafka_security_protocol={protocol} does not use TLS; "
                "use SSL or SASL_SSL"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("kafka_ssl_keyfile needs kafka_ssl_certfile (the certificate it belongs to)")
        return self

    def ssl_context(self) -> SSLContext:
        """Verifies the broker's certificate and host name (against the system CAs when no cafile)."""
        # Imported here: only TLS needs aiokafka's helper, and it loads the whole client.
        from aiokafka.helpers import create_ssl_context

        context: SSLContext = create_ssl_context(
            cafile=self.kafka_ssl_cafile,
            certfile=self.kafka_ssl_certfile,
            keyfile=self.kafka_ssl_keyfile,
        )
        return context

    def sasl_credentials(self) -> tuple[str, str]:
        """The SASL user and password (the validator refuses a SASL protocol without both)."""
        assert self.kafka_sasl_username is not None and self.kafka_sasl_password is not None
        return self.kafka_sasl_username, self.kafka_sasl_password.get_secret_value()


def client_options(connection: KafkaConnection) -> dict[str, Any]:
    """Keyword arguments that connect any aiokafka client (producer, consumer, admin) to the cluster."""
    protocol = connection.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": connection.kafka_bootstrap,
        "security_protocol": protocol.value,
    }
    if protocol.uses_tls:
        options["ssl_context"] = connection.ssl_context()
    if protocol.uses_sasl:
        username, password = connection.sasl_credentials()
        options |= {
            "sasl_mechanism": connection.kafka_sasl_mechanism.value,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    return options
