"""Configuration from the environment (prefix `FLAGS_`), defaults matching `scripts/stack`."""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import quote

from pydantic_settings import BaseSettings, SettingsConfigDict


class Role(StrEnum):
    """The Postgres roles: one owner for migrations and one per service, none superuser."""

    OWNER = "flags_owner"
    COMMAND = "flags_command"
    PROJECTOR = "flags_projector"
    QUERY = "flags_query"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLAGS_", frozen=True)

    pg_admin_url: str = "postgresql://postgres:postgres@127.0.0.1:55432/postgres"
    pg_host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_database: str = "flags"
    pg_password_flags_owner: str = "flags_owner"
    pg_password_flags_command: str = "flags_command"
    pg_password_flags_projector: str = "flags_projector"
    pg_password_flags_query: str = "flags_query"

    kafka_bootstrap: str = "127.0.0.1:59092"
    topic: str = "flags.changes"
    dead_letter_topic: str = "flags.changes.dlq"
    topic_partitions: int = 3
    projector_group: str = "flags-projector"

    redis_url: str = "redis://127.0.0.1:56379/0"
    redis_prefix: str = "flags"
    cache_ttl_seconds: int = 3600
    query_cache: bool = True  # False only to measure the uncached path

    command_host: str = "127.0.0.1"
    command_port: int = 8081
    query_host: str = "127.0.0.1"
    query_port: int = 8082
    max_body_bytes: int = 16 * 1024

    def pg_dsn(self, role: Role) -> str:
        password = getattr(self, f"pg_password_{role.value}")
        return (
            f"postgresql://{role.value}:{quote(password, safe='')}"
            f"@{self.pg_host}:{self.pg_port}/{self.pg_database}"
        )
