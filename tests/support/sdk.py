"""The SDK's settings for a test deployment: what the services' `Settings` say about Kafka and the query service."""

from __future__ import annotations

from flagsdk import SdkSettings
from services.infra.settings import Settings


def sdk_settings(settings: Settings) -> SdkSettings:
    """The fields both know (the same `FLAGS_*` names), so the client reaches the services `settings` run."""
    return SdkSettings(**settings.model_dump(include=set(SdkSettings.model_fields)))
