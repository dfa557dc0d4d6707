"""Segments as events: named, reusable sets of conditions that targeting rules name (`in_segment`).

A system-wide segment (`org_id` None) lives in stream `segment/{key}` on the system partition, and every
org's rules may name it; an org's in `org/{org}/segment/{key}`, on that org's partition, named only by that
org's rules (where it shadows a system segment of the same key). Defined, changed (the full new set is
carried, conditions included) and archived, like a flag's definition: an archived segment is final, and a
rule that names it (or a key no segment has) never matches.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.base import Change
from events.fields import OrgId
from events.targeting import MAX_SEGMENT_CONDITIONS, SEGMENT_KEY_PATTERN, SegmentCondition

__all__ = [
    "SegmentArchived",
    "SegmentChange",
    "SegmentChanged",
    "SegmentDefined",
    "segment_stream",
]


def segment_stream(org_id: str | None, segment_key: str) -> str:
    """The stream of one segment: `segment/{key}` (system-wide) or `org/{org}/segment/{key}`."""
    return f"segment/{segment_key}" if org_id is None else f"org/{org_id}/segment/{segment_key}"


class SegmentChange(Change):
    """A change to one segment."""

    segment_key: str = Field(pattern=SEGMENT_KEY_PATTERN, description="The segment's key, e.g. `beta-testers`.")
    org_id: OrgId | None = Field(default=None, description="The org whose segment it is; None: system-wide.")

    @property
    def stream(self) -> str:
        return segment_stream(self.org_id, self.segment_key)

    @property
    def tenant(self) -> str | None:
        return self.org_id


class _Described(SegmentChange):
    """What a segment is, carried in full on every define and change."""

    name: str = Field(min_length=1, max_length=100, description="What it is, as shown, e.g. `Beta testers`.")
    description: str = Field(default="", max_length=1000)
    conditions: tuple[SegmentCondition, ...] = Field(
        min_length=1,
        max_length=MAX_SEGMENT_CONDITIONS,
        description=f"All must hold for a context to be in the segment (1–{MAX_SEGMENT_CONDITIONS}).",
    )


class SegmentDefined(_Described):
    """A new segment exists."""

    type: Literal["SegmentDefined"] = "SegmentDefined"


class SegmentChanged(_Described):
    """A segment's name, description or conditions changed (the full new set is carried)."""

    type: Literal["SegmentChanged"] = "SegmentChanged"


class SegmentArchived(SegmentChange):
    """The segment is retired: no context is in it any more, and it takes no changes."""

    type: Literal["SegmentArchived"] = "SegmentArchived"
