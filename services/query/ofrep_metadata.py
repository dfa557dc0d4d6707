"""Flag metadata an OFREP answer carries beyond the level and the event's id and version (`ofrep._success`).

OFREP's `metadata` is a flat object of booleans, strings and numbers. Beside what
`ofrep` puts there (`level`, `eventId`, `version`, `rolloutPercentage`, `killSwitch`)
an answer says the flag's value type, as OFREP's configuration names the types
(`boolean`, `string`, `integer`, `float`, `object`), and the stream and instant of
the event that set the value, so a provider's log line leads to the audit trail.
Who made the change (the actor) and why stay in the audit trail, for its readers.
"""

from __future__ import annotations

from typing import Any

from flagcore import Evaluation

__all__ = ["more_metadata", "value_type"]


def value_type(value: Any) -> str:
    """The OFREP type of an answer's value (a JSON array counts as `object`, as OpenFeature's structure does)."""
    if type(value) is bool:
        return "boolean"
    if type(value) is int:
        return "integer"
    if type(value) is float:
        return "float"
    if isinstance(value, str):
        return "string"
    return "object"


def more_metadata(e: Evaluation) -> dict[str, Any]:
    """`valueType`, and the `stream` and `occurredAt` (RFC 3339, UTC) of the event that set the value, if any."""
    more: dict[str, Any] = {"valueType": value_type(e.value)}
    if e.source is not None:
        more["stream"] = e.source.stream
        more["occurredAt"] = e.source.occurred_at.isoformat().replace("+00:00", "Z")
    return more
