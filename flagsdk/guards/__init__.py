"""Guards for application code: HTTP routes, queue jobs and webhooks that depend on a flag.

Every guard asks a `FlagClient` at the moment it matters (the request, the job's
run, the webhook's arrival), so a flag switched off stops new work within the
client's propagation time. docs/guards.md has examples.
"""

from flagsdk.guards.http import FeatureGate, disabled_body, require_flag
from flagsdk.guards.jobs import SKIPPED, skip_unless_enabled
from flagsdk.guards.platforms import enabled_platforms, is_platform_enabled
from flagsdk.guards.webhooks import platform_webhook

__all__ = [
    "SKIPPED",
    "FeatureGate",
    "disabled_body",
    "enabled_platforms",
    "is_platform_enabled",
    "platform_webhook",
    "require_flag",
    "skip_unless_enabled",
]
