"""The design notes' platform helpers, over an SDK client: is an org's ad platform on, and which are."""

from __future__ import annotations

from events import Platform
from flagsdk.client import FlagClient


def is_platform_enabled(client: FlagClient, platform: Platform | str, *, user: str | None = None) -> bool:
    """False for a platform name this version does not know (never raises into product code)."""
    try:
        return client.is_platform_enabled(platform, user=user)
    except ValueError:
        return False


def enabled_platforms(client: FlagClient, *, user: str | None = None) -> list[Platform]:
    return client.enabled_platforms(user=user)
