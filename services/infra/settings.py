"""Configuration from the environment (prefix `FLAGS_`), defaults matching `scripts/stack`.

Transport security (docs/security.md) is off by default, as on the local stack:
Kafka PLAINTEXT, Postgres `sslmode=prefer` (TLS when the server offers it, unverified),
Redis as `redis_url` says (`rediss://` for TLS). Secrets never appear in `repr()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, FilePath, SecretStr, model_validator

from flaglog.connection import KafkaConnection, local_address

REDACTED = "**********"


LOCAL_PG_PORT = 55432  # scripts/stack's defaults (a unit test holds them equal)
LOCAL_REDIS_PORT = 56379


def _local_pg() -> str:
    return local_address("FLAGS_PG_PORT", LOCAL_PG_PORT)


class Role(StrEnum):
    """The Postgres roles: one owner for migrations and one per service, none superuser."""

    OWNER = "flags_owner"
    COMMAND = "flags_command"
    PROJECTOR = "flags_projector"
    QUERY = "flags_query"
    NOTIFIER = "flags_notifier"


class PgSslMode(StrEnum):
    """libpq's sslmode values, all six accepted by asyncpg (`?sslmode=` in the DSN)."""

    DISABLE = "disable"
    ALLOW = "allow"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class Settings(KafkaConnection):
    """Everything a service reads; the Kafka connection (and the `FLAGS_` prefix) is `KafkaConnection`'s."""

    pg_admin_url: str = Field(default_factory=lambda: f"postgresql://postgres:postgres@{_local_pg()}/postgres")
    pg_host: str = "127.0.0.1"
    pg_port: int = LOCAL_PG_PORT  # FLAGS_PG_PORT, as scripts/stack reads it
    pg_database: str = "flags"
    pg_password_flags_owner: str = Field("flags_owner", repr=False)
    pg_password_flags_command: str = Field("flags_command", repr=False)
    pg_password_flags_projector: str = Field("flags_projector", repr=False)
    pg_password_flags_query: str = Field("flags_query", repr=False)
    pg_password_flags_notifier: str = Field("flags_notifier", repr=False)
    # TLS to Postgres, for the service roles' DSNs and for `pg_admin_url` unless it names its own.
    pg_sslmode: PgSslMode = PgSslMode.PREFER
    pg_sslrootcert: FilePath | None = None  # CA bundle; verify-ca/verify-full (and require) check against it

    dead_letter_topic: str = "flags.changes.dlq"
    topic_partitions: int = 3
    projector_group: str = "flags-projector"
    # Static group membership (Kafka's KIP-345): a projector restarted under the same id takes its partitions
    # back at once instead of after a rebalance. One id per running instance (scripts/services sets one);
    # None: dynamic membership.
    projector_instance_id: str | None = None

    # TLS and password: rediss://:password@host:port/0
    redis_url: str = Field(default_factory=lambda: f"redis://{local_address('FLAGS_REDIS_PORT', LOCAL_REDIS_PORT)}/0")
    redis_ssl_ca_certs: FilePath | None = None  # CA bundle for rediss://; None: the system's CA store
    redis_prefix: str = "flags"
    cache_ttl_seconds: int = 3600

    command_host: str = "127.0.0.1"
    command_port: int = 8081
    query_host: str = "127.0.0.1"
    query_port: int = 8082
    query_workers: int = 0  # worker processes; 0: one per CPU this process may run on
    # OFREP's change stream (docs/ofrep.md): open streams a query worker holds at most (more: 503), and how often
    # an idle one sends a heartbeat comment (proxies close silent connections; the key is checked again then).
    ofrep_stream_max_subscribers: int = Field(1000, ge=0)
    ofrep_stream_heartbeat_seconds: float = Field(15.0, gt=0)
    # OFREP answers for a flag no level sets leave `value` out (OFREP's codeDefaultFlag): the provider serves the
    # default in the application's code rather than the flag's off variant (services/query/ofrep_code_defaults.py).
    ofrep_code_defaults: bool = False
    projector_host: str = "127.0.0.1"  # the projector's only HTTP: /metrics, /healthz, /readyz
    projector_port: int = 8084
    projector_ready_lag_seconds: float = 30.0  # /readyz answers 503 while a partition is further behind than this
    log_format: Literal["text", "json"] = "text"  # json: one object per line (services.observability.logs)
    max_body_bytes: int = 16 * 1024
    cors_origins: list[str] = []  # FLAGS_CORS_ORIGINS='["https://admin.example"]'; empty: no cross-origin access
    command_rate_per_second: float = 20.0  # writes per API key on the command API, refilled continuously
    command_rate_burst: int = 40  # writes a key may make at once before the rate applies
    console_host: str = "127.0.0.1"  # the admin console (services/console), a client of the two APIs
    console_port: int = 8083
    console_idle_seconds: int = 900  # a console session unused this long is gone: sign in again
    console_secure_cookie: bool = False  # True behind HTTPS: the session cookie is then sent over TLS only

    # The notifier (services/notifier): Slack and webhook deliveries of flag changes.
    notifier_group: str = "flags-notifier"
    # Seals subscription secrets in the log (AES-256-GCM): 32 bytes, base64. The command service seals with
    # it, the notifier opens with it; without it no subscription can be created (or delivered to).
    subscription_key: SecretStr | None = None
    notifier_host: str = "127.0.0.1"  # the notifier's /healthz, /readyz, /metrics and dead-letter API
    notifier_port: int = 8085
    notifier_console_url: str = "http://127.0.0.1:8083"  # where a message's "audit entry" link points
    # Hosts (names or IP literals) a destination may name although they resolve to private, loopback or
    # link-local addresses, and may be reached over plain http: FLAGS_NOTIFIER_ALLOW_HOSTS='["127.0.0.1"]'.
    notifier_allow_hosts: list[str] = []
    notifier_connect_timeout: float = 3.0  # s
    notifier_read_timeout: float = 5.0  # s
    notifier_response_bytes: int = 4096  # of a destination's answer, kept for the delivery log
    notifier_max_attempts: int = 6  # per delivery, then a dead letter
    notifier_backoff_base: float = 0.5  # s: full jitter over base * 2**(attempt-1), capped
    notifier_backoff_cap: float = 60.0  # s
    notifier_attempts_kept: int = 50  # per subscription, in the delivery log
    # Operational alerts (subscriptions opt in with `alert.*` event types): the projector is "lagging" once its
    # oldest record not applied has waited this long, and "recovered" under half of it; measured every
    # `notifier_lag_interval` s. The dead-letter topic is read in the group `notifier_group` + "-dead-letters".
    notifier_alert_lag_seconds: float = 30.0
    notifier_lag_interval: float = 5.0

    @model_validator(mode="after")
    def _transport_settings_agree(self) -> Settings:
        """Refuse combinations that would silently run with less security than asked for (Kafka's: its own)."""
        if self.pg_sslrootcert is not None and self.pg_sslmode not in (
            PgSslMode.REQUIRE,
            PgSslMode.VERIFY_CA,
            PgSslMode.VERIFY_FULL,
        ):
            raise ValueError(
                f"pg_sslrootcert is set but pg_sslmode={self.pg_sslmode} never verifies the server; "
                "use verify-full (or verify-ca)"
            )
        if self.redis_ssl_ca_certs is not None and urlsplit(self.redis_url).scheme != "rediss":
            raise ValueError("redis_ssl_ca_certs is set but redis_url is not rediss:// (TLS)")
        return self

    def pg_dsn(self, role: Role) -> str:
        password = getattr(self, f"pg_password_{role.value}")
        return (
            f"postgresql://{role.value}:{quote(password, safe='')}"
            f"@{self.pg_host}:{self.pg_port}/{self.pg_database}?{urlencode(self._pg_ssl_params())}"
        )

    def pg_admin_dsn(self) -> str:
        """`pg_admin_url` with `pg_sslmode`/`pg_sslrootcert` added, unless the URL names its own."""
        parts = urlsplit(self.pg_admin_url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        named = {key for key, _ in query}
        if "sslmode" in named or "ssl" in named:
            return self.pg_admin_url
        query += [(k, v) for k, v in self._pg_ssl_params().items() if k not in named]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _pg_ssl_params(self) -> dict[str, str]:
        params = {"sslmode": self.pg_sslmode.value}
        if self.pg_sslrootcert is not None:
            params["sslrootcert"] = str(self.pg_sslrootcert)
        return params

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments for `Redis.from_url(self.redis_url, ...)` beyond what the URL carries."""
        if self.redis_ssl_ca_certs is None:
            return {}
        return {"ssl_ca_certs": str(self.redis_ssl_ca_certs)}

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URLs may carry passwords; the pg_password_* fields are left out (repr=False)
        # and SecretStr prints stars.
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name in ("pg_admin_url", "redis_url") else value)


def redact_url(url: str) -> str:
    """The URL with the password of its user part replaced by stars."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostinfo}"))
