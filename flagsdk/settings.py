"""The SDK's own settings: the Kafka connection and where the query service answers, nothing else.

Read from the same `FLAGS_*` environment names as the services (`FLAGS_KAFKA_*`,
`FLAGS_QUERY_HOST`, `FLAGS_QUERY_PORT`), so one deployment's environment configures
both; the services' other settings (database passwords among them) are ignored.
"""

from __future__ import annotations

from flaglog.connection import KafkaConnection


class SdkSettings(KafkaConnection):
    """What `FlagClient.from_settings` needs; `SdkSettings()` reads it from the environment."""

    # FLAGS_QUERY_URL, when the service is reached by another address than it binds (TLS, a load balancer).
    query_url: str | None = None
    query_host: str = "127.0.0.1"
    query_port: int = 8082

    @property
    def query_base_url(self) -> str:
        """`query_url`, else the address the query service binds (`FLAGS_QUERY_HOST`:`FLAGS_QUERY_PORT`)."""
        return self.query_url or f"http://{self.query_host}:{self.query_port}"
