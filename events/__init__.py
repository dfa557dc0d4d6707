"""The wire contract: every change as an immutable, versioned, hash-chained event.

Its names load on first use (PEP 562): the vocabulary alone (`from events import Platform`, what the
CLI needs to build its parser) costs no pydantic model building, which is most of the 250 ms that
importing every module costs. `_EXPORTS` says where each name of `__all__` lives; tests/unit/test_events.py
checks the two agree with the imports below, which are what type checkers read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from events.changes import (
        CHANGE_TYPES,
        AnyChange,
        ApiKeyCreated,
        ApiKeyExpirySet,
        ApiKeyRevoked,
        Change,
        FlagArchived,
        FlagChange,
        FlagDefined,
        FlagUpdated,
        KeyChange,
        KillSwitchEngaged,
        KillSwitchReleased,
        OrgOverrideCleared,
        OrgOverrideSet,
        PlatformOverrideCleared,
        PlatformOverrideSet,
        RolloutPercentageSet,
        ScheduledSettingCancelled,
        SettingScheduled,
        SystemDefaultSet,
        TargetingRule,
        TargetingRulesSet,
        UserOverrideCleared,
        UserOverrideSet,
        Variant,
        VariantSelected,
        key_stream,
    )
    from events.cloudevents import Record, from_record, to_record
    from events.codec import decode
    from events.envelope import GENESIS_HASH, Actor, Envelope, canonical_json, hash_of, seal
    from events.errors import DecodeError, EventError
    from events.log_records import ForeignRecordAcknowledged, foreign_record_stream
    from events.scope import SYSTEM_PARTITION_KEY, Scope, definition_stream
    from events.segments import SegmentArchived, SegmentChange, SegmentChanged, SegmentDefined, segment_stream
    from events.subscriptions import (
        SubscriptionChange,
        SubscriptionChanged,
        SubscriptionCreated,
        SubscriptionDeleted,
        SubscriptionPaused,
        SubscriptionResumed,
        subscription_stream,
    )
    from events.vocabulary import RESOLUTION_ORDER, DestinationKind, FlagKind, KeyRole, Level, Platform, ValueType

_EXPORTS: dict[str, tuple[str, ...]] = {
    "events.changes": (
        "CHANGE_TYPES", "AnyChange", "ApiKeyCreated", "ApiKeyExpirySet", "ApiKeyRevoked", "Change", "FlagArchived",
        "FlagChange", "FlagDefined", "FlagUpdated", "KeyChange", "KillSwitchEngaged", "KillSwitchReleased",
        "OrgOverrideCleared", "OrgOverrideSet", "PlatformOverrideCleared", "PlatformOverrideSet",
        "RolloutPercentageSet", "ScheduledSettingCancelled", "SettingScheduled", "SystemDefaultSet",
        "TargetingRule", "TargetingRulesSet", "UserOverrideCleared", "UserOverrideSet", "Variant", "VariantSelected",
        "key_stream",
    ),
    "events.subscriptions": (
        "SubscriptionChange", "SubscriptionChanged", "SubscriptionCreated", "SubscriptionDeleted",
        "SubscriptionPaused", "SubscriptionResumed", "subscription_stream",
    ),
    "events.segments": (
        "SegmentArchived", "SegmentChange", "SegmentChanged", "SegmentDefined", "segment_stream",
    ),
    "events.cloudevents": ("Record", "from_record", "to_record"),
    "events.codec": ("decode",),
    "events.envelope": ("GENESIS_HASH", "Actor", "Envelope", "canonical_json", "hash_of", "seal"),
    "events.errors": ("DecodeError", "EventError"),
    "events.log_records": ("ForeignRecordAcknowledged", "foreign_record_stream"),
    "events.scope": ("SYSTEM_PARTITION_KEY", "Scope", "definition_stream"),
    "events.vocabulary": (
        "RESOLUTION_ORDER", "DestinationKind", "FlagKind", "KeyRole", "Level", "Platform", "ValueType",
    ),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "CHANGE_TYPES",
    "GENESIS_HASH",
    "RESOLUTION_ORDER",
    "SYSTEM_PARTITION_KEY",
    "Actor",
    "AnyChange",
    "ApiKeyCreated",
    "ApiKeyExpirySet",
    "ApiKeyRevoked",
    "Change",
    "DecodeError",
    "DestinationKind",
    "Envelope",
    "EventError",
    "FlagArchived",
    "FlagChange",
    "FlagDefined",
    "FlagKind",
    "FlagUpdated",
    "ForeignRecordAcknowledged",
    "KeyChange",
    "KeyRole",
    "KillSwitchEngaged",
    "KillSwitchReleased",
    "Level",
    "OrgOverrideCleared",
    "OrgOverrideSet",
    "Platform",
    "PlatformOverrideCleared",
    "PlatformOverrideSet",
    "Record",
    "RolloutPercentageSet",
    "ScheduledSettingCancelled",
    "Scope",
    "SegmentArchived",
    "SegmentChange",
    "SegmentChanged",
    "SegmentDefined",
    "SettingScheduled",
    "SubscriptionChange",
    "SubscriptionChanged",
    "SubscriptionCreated",
    "SubscriptionDeleted",
    "SubscriptionPaused",
    "SubscriptionResumed",
    "SystemDefaultSet",
    "TargetingRule",
    "TargetingRulesSet",
    "UserOverrideCleared",
    "UserOverrideSet",
    "ValueType",
    "Variant",
    "VariantSelected",
    "canonical_json",
    "decode",
    "definition_stream",
    "foreign_record_stream",
    "from_record",
    "hash_of",
    "key_stream",
    "seal",
    "segment_stream",
    "subscription_stream",
    "to_record",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'events' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
