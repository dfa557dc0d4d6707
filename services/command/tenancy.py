"""Which tenancy the command side reads and writes the audit trail under (row-level security, migration 0009).

A caller reads as what its key is scoped to: an org-scoped key (org admin, auditor,
evaluator) as its org's tenant, so a route that forgot to filter by org still returns
nothing of another org; a system-wide key (system admin, system auditor) as the explicit
cross-tenant reader, because it may name any org.

A write runs under the tenancy that owns its rows (an org's changes under that org; a
system change, i.e. definitions, system defaults, system-wide keys and subscriptions,
under the system) when it is made in a cross-tenant context (a system-wide caller, the
key and subscription stores behind their own authorization, the snapshot job). Any other
context writes only as itself, so an org's caller that a route mistakenly let name
another org has its write refused by Postgres.
"""

from __future__ import annotations

from collections.abc import Sequence

from events import Change
from services.auth.policy import SYSTEM_WIDE_ROLES, Principal
from services.infra.tenancy import Tenancy

__all__ = ["reader_for", "writer_for"]


def reader_for(caller: Principal) -> Tenancy:
    """The tenancy `caller`'s reads run under; a key of no org that is not system-wide reads only system rows."""
    if caller.org_id is not None:
        return Tenancy.tenant(caller.org_id)
    return Tenancy.CROSS_TENANT if caller.role in SYSTEM_WIDE_ROLES else Tenancy.SYSTEM


def writer_for(changes: Sequence[Change], *, acting_as: Tenancy = Tenancy.CROSS_TENANT) -> Tenancy:
    """The tenancy an append of `changes` runs under, in the context `acting_as`.

    The changes must all belong to one tenant, or all to the system: no write spans two.
    """
    tenants = {change.tenant for change in changes}
    if len(tenants) != 1:
        raise ValueError(f"one write belongs to one tenancy, not {sorted(map(str, tenants))}")
    return Tenancy.of(tenants.pop()) if acting_as.cross_tenant else acting_as
