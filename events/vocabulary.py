"""The words every event uses: levels, platforms, flag kinds and identifier syntax.

They live in the wire contract because a value that is valid on the wire must be
valid everywhere else; the services and the pure core import them from here. Plain
Python: the pydantic field types built from these patterns are in `events.fields`.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Level(StrEnum):
    """Where a setting applies; resolution goes user → platform → org → system."""

    USER = "user"
    PLATFORM = "platform"
    ORG = "org"
    SYSTEM = "system"


RESOLUTION_ORDER: tuple[Level, ...] = (Level.USER, Level.PLATFORM, Level.ORG, Level.SYSTEM)


class Platform(StrEnum):
    """The ad platforms a tenant can connect (the design notes' six)."""

    META = "meta"
    GOOGLE = "google"
    TIKTOK = "tiktok"
    LINKEDIN = "linkedin"
    TWITTER = "twitter"
    SNAPCHAT = "snapchat"


class FlagKind(StrEnum):
    """Martin Fowler's toggle categories."""

    RELEASE = "release"
    EXPERIMENT = "experiment"
    OPS = "ops"
    PERMISSION = "permission"


class KeyRole(StrEnum):
    """What an API key may do (see `services.auth.policy`)."""

    SYSTEM_ADMIN = "system-admin"
    ORG_ADMIN = "org-admin"
    AUDITOR = "auditor"
    EVALUATOR = "evaluator"


FLAG_KEY_PATTERN = r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*$"
ORG_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+:-]{0,127}$"

VARIANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
VARIANT_WEIGHT_TOTAL = 1000  # Unleash normalises variant weights to thousandths

FLAG_KEY_RE = re.compile(FLAG_KEY_PATTERN)
ORG_ID_RE = re.compile(ORG_ID_PATTERN)
USER_ID_RE = re.compile(USER_ID_PATTERN)
