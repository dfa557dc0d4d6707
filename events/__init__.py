"""The wire contract: every change as an immutable, versioned, hash-chained event."""

from events.changes import (
    CHANGE_TYPES,
    AnyChange,
    Change,
    FlagArchived,
    FlagDefined,
    FlagUpdated,
    OrgOverrideCleared,
    OrgOverrideSet,
    PlatformOverrideCleared,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    UserOverrideCleared,
    UserOverrideSet,
)
from events.cloudevents import Record, from_record, to_record
from events.codec import decode
from events.envelope import GENESIS_HASH, Actor, Envelope, canonical_json, hash_of, seal
from events.errors import DecodeError, EventError
from events.scope import SYSTEM_PARTITION_KEY, Scope, definition_stream
from events.vocabulary import RESOLUTION_ORDER, FlagKind, Level, Platform

__all__ = [
    "CHANGE_TYPES",
    "GENESIS_HASH",
    "RESOLUTION_ORDER",
    "SYSTEM_PARTITION_KEY",
    "Actor",
    "AnyChange",
    "Change",
    "DecodeError",
    "Envelope",
    "EventError",
    "FlagArchived",
    "FlagDefined",
    "FlagKind",
    "FlagUpdated",
    "Level",
    "OrgOverrideCleared",
    "OrgOverrideSet",
    "Platform",
    "PlatformOverrideCleared",
    "PlatformOverrideSet",
    "Record",
    "RolloutPercentageSet",
    "Scope",
    "SystemDefaultSet",
    "UserOverrideCleared",
    "UserOverrideSet",
    "canonical_json",
    "decode",
    "definition_stream",
    "from_record",
    "hash_of",
    "seal",
    "to_record",
]
