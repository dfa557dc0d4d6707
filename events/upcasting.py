"""Lifting event data written by older schema versions to today's shape.

An upcaster is registered for `(type, from_version)` and turns that version's
data into the next version's. Decoding applies them in a chain, so a consumer
only ever sees current models while the log keeps the bytes it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events.changes import CHANGE_TYPES

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


class UpcastError(ValueError):
    """The data's schema version cannot be brought to the current one."""


def upcast(event_type: str, schema_version: int, data: Data) -> Data:
    """Return `data` in the current schema of `event_type`."""
    change = CHANGE_TYPES.get(event_type)
    if change is None:
        raise UpcastError(f"unknown event type {event_type!r}")
    current = change.SCHEMA_VERSION
    if schema_version > current:
        raise UpcastError(f"{event_type} schema_version {schema_version} is newer than {current}")
    while schema_version < current:
        step = _UPCASTERS.get((event_type, schema_version))
        if step is None:
            raise UpcastError(f"no upcaster for {event_type} v{schema_version}")
        data = step(dict(data))
        schema_version += 1
    return data


@upcaster("FlagDefined", 1)
def _flag_defined_v1(data: Data) -> Data:
    """v1 carried only a key and a description; kind, owner and group came in v2."""
    data.setdefault("kind", "release")
    data.setdefault("owner", None)
    data.setdefault("group", data["flag_key"].split(".", 1)[0])
    return data


@upcaster("FlagDefined", 2)
def _flag_defined_v2(data: Data) -> Data:
    """v2 had no variants or expiry: a flag written then has neither."""
    data.setdefault("variants", [])
    data.setdefault("expires_at", None)
    return data


@upcaster("FlagUpdated", 1)
def _flag_updated_v1(data: Data) -> Data:
    """v1 carried no variants or expiry, which did not exist yet: the full new set has none."""
    data.setdefault("variants", [])
    data.setdefault("expires_at", None)
    return data


@upcaster("FlagDefined", 3)
@upcaster("FlagUpdated", 2)
def _typed_values(data: Data) -> Data:
    """Until v4 (FlagDefined) and v3 (FlagUpdated) every flag was boolean, with the implicit on/off variants."""
    data.setdefault("value_type", "boolean")
    data.setdefault("values", {})
    data.setdefault("default_variant", None)
    data.setdefault("off_variant", None)
    return data
