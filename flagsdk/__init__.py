"""flagstream's in-process SDK: one org's flags evaluated locally, kept current by the change topic.

    from flagsdk import FlagClient
    with FlagClient(query_url=..., api_key=..., org_id="acme", kafka={"bootstrap_servers": ...}) as flags:
        flags.is_enabled("ai.insights.enabled", platform="tiktok", user="u-42")
        flags.evaluate("checkout.theme", user="u-42", context={"email": "ana@acme.com", "plan": "pro"})

`FlagClient.from_env(api_key=..., org_id=...)` reads the same `FLAGS_*` environment as the
services (`SdkSettings`: Kafka and the query service, no server secrets).

Errors: `SdkError` is the base of everything raised here; only `start()` raises
(`BootstrapError`). docs/sdk.md has the rest.
"""

from flagsdk.client import FlagClient, Resolution, Staleness, Status
from flagsdk.errors import BootstrapError, SdkError, SnapshotError
from flagsdk.settings import SdkSettings

__all__ = [
    "BootstrapError", "FlagClient", "Resolution", "SdkError", "SdkSettings", "SnapshotError", "Staleness", "Status",
]  # fmt: skip
