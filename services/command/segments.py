"""Segments on the command side, pure: the request bodies, the events they make, the view of a segment, and
which flags' rules name a segment (what refuses its archive and what `GET …/flags` answers).

A segment is read from its stream's head (the value `flagcore.transition` recorded); which flags use it from
the heads of the targeting-rule streams (`…/rules`) the caller may read. An org's rules that name key `k`
use the org's own segment `k` when the org has one, else the system's (`flagcore.evaluation.segment_lookup`):
a system segment is used by the system's rules and by the rules of every org without a segment of its own
of that key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from events import SegmentChanged, SegmentDefined, segment_stream
from events.targeting import MAX_SEGMENT_CONDITIONS, SEGMENT_KEY_PATTERN, SEGMENT_OPERATORS, SegmentCondition
from flagcore import StreamHead
from services.command.schemas import NoNul, Reason

__all__ = [
    "ArchiveSegmentRequest",
    "ChangeSegmentRequest",
    "DefineSegmentRequest",
    "RuleHead",
    "SegmentUse",
    "SegmentView",
    "changed",
    "defined",
    "uses",
    "view_of",
]

SegmentKey = Annotated[
    str, Field(pattern=SEGMENT_KEY_PATTERN, description="The segment's key: letters, digits, `.`, `_`, `-` (1–64).")
]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul,
    Field(description="What the segment is, as shown, e.g. `Beta testers`."),
]  # fmt: skip
Description = Annotated[str, NoNul, Field(max_length=1000, description="What the segment is for.")]


def _no_nul_values(conditions: list[SegmentCondition]) -> list[SegmentCondition]:
    """PostgreSQL text cannot hold NUL: the read models downstream could not store such a value."""
    for i, condition in enumerate(conditions):
        if any(type(v) is str and "\x00" in v for v in condition.values):
            raise ValueError(f"{i}.values: must not contain NUL characters")
    return conditions


Conditions = Annotated[
    list[SegmentCondition],
    AfterValidator(_no_nul_values),
    Field(
        min_length=1,
        max_length=MAX_SEGMENT_CONDITIONS,
        description=f"All must hold for a context to be in the segment (1–{MAX_SEGMENT_CONDITIONS}); no segment "
        "operators; an `in` list of members holds up to 10,000 values.",
    ),
]
ExpectedVersion = Annotated[
    StrictInt | None, Field(default=None, ge=0, description="Refuse (409) unless the segment is at this version.")
]


class DefineSegmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segment_key: SegmentKey
    name: Name
    description: Description = ""
    conditions: Conditions
    reason: Reason


class ChangeSegmentRequest(BaseModel):
    """Absent fields are left as they are; `conditions` is the full new list."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: Description | None = None
    conditions: Conditions | None = None
    reason: Reason
    expected_version: ExpectedVersion = None


class ArchiveSegmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason
    expected_version: ExpectedVersion = None


@dataclass(frozen=True, slots=True)
class SegmentView:
    """A segment as its stream's head holds it."""

    key: str
    org_id: str | None
    name: str
    description: str
    conditions: list[dict[str, Any]]
    archived: bool
    version: int

    @property
    def stream(self) -> str:
        return segment_stream(self.org_id, self.key)

    def shown(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "org_id": self.org_id,
            "stream": self.stream,
            "name": self.name,
            "description": self.description,
            "conditions": self.conditions,
            "archived": self.archived,
            "version": self.version,
        }


def view_of(org_id: str | None, key: str, head: StreamHead) -> SegmentView | None:
    """The segment at `head` (None: no such segment)."""
    value = head.value
    if value is None:
        return None
    return SegmentView(
        key, org_id, value["name"], value.get("description", ""), value["conditions"], bool(value.get("archived")),
        head.version,
    )  # fmt: skip


def defined(body: DefineSegmentRequest, org_id: str | None) -> SegmentDefined:
    return SegmentDefined(
        segment_key=body.segment_key,
        org_id=org_id,
        name=body.name,
        description=body.description,
        conditions=tuple(body.conditions),
    )


def changed(current: SegmentView, body: ChangeSegmentRequest) -> SegmentChanged | None:
    """The full new set; None when it equals the current one (nothing to write)."""
    change = SegmentChanged.model_validate(
        {
            "segment_key": current.key,
            "org_id": current.org_id,
            "name": current.name if body.name is None else body.name,
            "description": current.description if body.description is None else body.description,
            "conditions": current.conditions if body.conditions is None else body.conditions,
        }
    )
    same = (
        change.name == current.name
        and change.description == current.description
        and [c.model_dump(mode="json", exclude_none=True) for c in change.conditions] == current.conditions
    )
    return None if same else change


@dataclass(frozen=True, slots=True)
class RuleHead:
    """The head of one targeting-rule stream: whose list it is and the rules it holds now."""

    org_id: str | None
    flag_key: str
    value: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class SegmentUse:
    """One flag's rule list that names the segment: the flag, whose list (None: the system's) and which rules."""

    flag_key: str
    org_id: str | None
    rules: tuple[str, ...]

    def shown(self) -> dict[str, Any]:
        return {"flag_key": self.flag_key, "org_id": self.org_id, "rules": list(self.rules)}

    def __str__(self) -> str:
        whose = "the system's rules" if self.org_id is None else f"{self.org_id}'s rules"
        return f"{self.flag_key} ({whose}: {', '.join(self.rules)})"


def uses(
    segment_org: str | None, segment_key: str, heads: Iterable[RuleHead], shadowed: Iterable[str] = ()
) -> list[SegmentUse]:
    """The rule lists among `heads` that name the segment, by flag then org (the system's first).

    `shadowed` are the orgs with a segment of their own of that key: their rules name theirs, not the system's.
    """
    hidden = set(shadowed)
    found = []
    for head in heads:
        if segment_org is not None and head.org_id != segment_org:
            continue
        if segment_org is None and head.org_id is not None and head.org_id in hidden:
            continue
        naming = tuple(r["id"] for r in (head.value or {}).get("rules", ()) if _names(r, segment_key))
        if naming:
            found.append(SegmentUse(head.flag_key, head.org_id, naming))
    return sorted(found, key=lambda u: (u.flag_key, u.org_id is not None, u.org_id or ""))


def _names(rule: Mapping[str, Any], segment_key: str) -> bool:
    return any(
        c.get("operator") in SEGMENT_OPERATORS and segment_key in (c.get("values") or ()) for c in rule["conditions"]
    )
