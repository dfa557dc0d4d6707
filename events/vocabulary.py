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


class ValueType(StrEnum):
    """What a flag's variants hold: OpenFeature's five types (`object` is a JSON object or array)."""

    BOOLEAN = "boolean"
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    OBJECT = "object"


class KeyRole(StrEnum):
    """What an API key may do (see `services.auth.policy`)."""

    SYSTEM_ADMIN = "system-admin"
    ORG_ADMIN = "org-admin"
    AUDITOR = "auditor"
    EVALUATOR = "evaluator"


# A flag key as other systems write them (Unleash, flagd, LaunchDarkly exports): ASCII letters of either case,
# digits, `_`, `-` and `.`, 1 to 255 characters, case preserved (`Feature.A` and `feature.a` are two flags).
# Never `/` (a stream name's separator, a URL's path), whitespace, `:` (a Redis key's separator) or anything
# outside ASCII. Not dots alone: `.` and `..` are dot-segments a URL client removes before sending, so such a
# key could be written but never addressed. Written without look-around so that pydantic's regex engine,
# JSON Schema (ECMA-262) and the generators that read the OpenAPI document all read it the same way.
MAX_FLAG_KEY = 255
FLAG_KEY_PATTERN = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
FLAG_KEY_RULE = "1-255 ASCII letters (either case), digits, `_`, `-` or `.`, not dots alone, e.g. `Feature.A`"
ORG_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+:-]{0,127}$"

VARIANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
VARIANT_WEIGHT_TOTAL = 1000  # Unleash normalises variant weights to thousandths
MAX_VARIANTS = 50  # named variants of a typed flag, and arms of a split
MAX_STRING_VALUE = 10_000  # characters of a string variant's value
MAX_OBJECT_VALUE_BYTES = 16_384  # canonical JSON bytes of an object variant's value

FLAG_KEY_RE = re.compile(FLAG_KEY_PATTERN)
ORG_ID_RE = re.compile(ORG_ID_PATTERN)
USER_ID_RE = re.compile(USER_ID_PATTERN)


def is_flag_key(value: object) -> bool:
    """Whether `value` is a valid flag key: the one test every layer that is not a pydantic model applies.

    `fullmatch`, because `re.match` with `$` would accept a key followed by a newline.
    """
    return isinstance(value, str) and len(value) <= MAX_FLAG_KEY and FLAG_KEY_RE.fullmatch(value) is not None


class DestinationKind(StrEnum):
    """Where a notification subscription delivers."""

    SLACK = "slack"  # a Slack incoming webhook: Block Kit messages
    WEBHOOK = "webhook"  # any HTTPS endpoint: CloudEvents JSON, signed per Standard Webhooks


class AlertKind(StrEnum):
    """An operational alert a subscription may opt in to, by naming it among its `event_types`.

    Alerts are not events of the log: the notifier derives them (from kill-switch events, from the
    projector's dead-letter topic, from the projector's lag) and tells them through the same
    subscriptions. A subscription whose `event_types` names only alerts hears no flag change.
    """

    KILL_SWITCH = "alert.kill_switch"  # a kill switch engaged or released
    DEAD_LETTER = "alert.dead_letter"  # records landed on the projector's dead-letter topic
    PROJECTOR_LAG = "alert.projector_lag"  # the projector behind by more than a threshold, and back


# A subscription's id: made by the command service, unique within the log.
SUBSCRIPTION_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
