"""Whose rows a Postgres transaction may see and write: one tenant, the system, or every tenant (read only).

Row-level security on the audit trail (`event_store`, `snapshots`, `snapshot_runs`,
migration 0009) reads two per-transaction settings, and `Tenancy` is what they say:

- `Tenancy.tenant(org)`: that org's rows, and the catalogue every org sees (flag
  definitions and system defaults: system rows whose stream starts with `flag/`; and the
  system-wide segments, `segment/`, migration 0013); writes only that org's rows.
- `Tenancy.SYSTEM`: the system rows (org_id NULL) whatever their stream (definitions,
  system-wide keys and subscriptions, snapshot runs); writes only system rows.
- `Tenancy.CROSS_TENANT`: every row, for the named system-wide readers (system admins and
  auditors, the relay, the snapshot job, the projection check); it writes no new row.

The read rule is stated here (`reads`) as well as in SQL, so the in-memory event store applies
the same one; the contract tests hold the two to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["CATALOGUE_PREFIX", "SYSTEM_SEGMENT_PREFIX", "Tenancy"]

CATALOGUE_PREFIX = "flag/"  # definitions and system defaults: the system rows every tenant reads
SYSTEM_SEGMENT_PREFIX = "segment/"  # system-wide segments, which every tenant's rules may name: read by all too


@dataclass(frozen=True, slots=True)
class Tenancy:
    """One of: a tenant (`org_id`), the system (neither), every tenant for reading (`cross_tenant`)."""

    org_id: str | None = None
    cross_tenant: bool = False

    SYSTEM: ClassVar[Tenancy]
    CROSS_TENANT: ClassVar[Tenancy]

    def __post_init__(self) -> None:
        if self.org_id == "":
            raise ValueError("a tenant needs a non-empty org id")
        if self.org_id is not None and self.cross_tenant:
            raise ValueError("a tenancy is one org's or every org's, not both")

    @classmethod
    def tenant(cls, org_id: str) -> Tenancy:
        return cls(org_id=org_id)

    @classmethod
    def of(cls, org_id: str | None) -> Tenancy:
        """The tenancy that owns a row with this org_id: the org's, or the system's for None."""
        return cls.SYSTEM if org_id is None else cls(org_id=org_id)

    def reads(self, org_id: str | None, stream: str) -> bool:
        """May a transaction under this tenancy see a row of `org_id` on `stream`?"""
        if self.cross_tenant:
            return True
        if org_id is None:
            return self.org_id is None or stream.startswith((CATALOGUE_PREFIX, SYSTEM_SEGMENT_PREFIX))
        return org_id == self.org_id

    def __str__(self) -> str:
        if self.cross_tenant:
            return "cross-tenant"
        return "system" if self.org_id is None else f"tenant {self.org_id}"


Tenancy.SYSTEM = Tenancy()
Tenancy.CROSS_TENANT = Tenancy(cross_tenant=True)
