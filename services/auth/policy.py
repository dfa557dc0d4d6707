"""Roles and what each may do, as one pure function the services call per request.

A refusal never says whether the named org or flag exists: every cross-tenant
request gets the same `Forbidden`, whatever it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from events import Actor, KeyRole

# system-admin: flag definitions, system defaults, kill switches, any org
# org-admin:    overrides, rollouts, schedules and notification subscriptions of its own org
# auditor:      reads the audit trail and the subscriptions of its scope, changes nothing
# evaluator:    evaluates its own org's flags, nothing else
Role = KeyRole


class Action(StrEnum):
    MANAGE_FLAGS = "manage-flags"  # define, update, archive, system defaults
    CHANGE_OVERRIDES = "change-overrides"  # org, platform and user level of one org
    EVALUATE = "evaluate"
    READ_AUDIT = "read-audit"
    READ_CATALOG = "read-catalog"  # flag definitions: what exists, not any tenant's data
    MANAGE_KEYS = "manage-keys"
    MANAGE_SUBSCRIPTIONS = "manage-subscriptions"  # notification subscriptions: system-wide, or of one org
    READ_SUBSCRIPTIONS = "read-subscriptions"  # list them, and their deliveries (never their secrets)
    ACKNOWLEDGE_LOG = "acknowledge-log"  # record that a foreign record on the log is known (system admins)


_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.SYSTEM_ADMIN: frozenset(Action),
    Role.ORG_ADMIN: frozenset(
        {
            Action.CHANGE_OVERRIDES,
            Action.EVALUATE,
            Action.READ_AUDIT,
            Action.READ_CATALOG,
            Action.MANAGE_KEYS,
            Action.MANAGE_SUBSCRIPTIONS,
            Action.READ_SUBSCRIPTIONS,
        }
    ),
    Role.AUDITOR: frozenset({Action.READ_AUDIT, Action.READ_CATALOG, Action.READ_SUBSCRIPTIONS}),
    Role.EVALUATOR: frozenset({Action.EVALUATE, Action.READ_CATALOG}),
}

# Actions on one tenant's data: an org-scoped key may only name its own org.
# A system-wide subscription (org None) is thus a system admin's (or a system-wide auditor's, to read).
TENANT_ACTIONS = frozenset(
    {
        Action.CHANGE_OVERRIDES,
        Action.EVALUATE,
        Action.READ_AUDIT,
        Action.MANAGE_KEYS,
        Action.MANAGE_SUBSCRIPTIONS,
        Action.READ_SUBSCRIPTIONS,
    }
)

# Which roles an org admin may hand out within its own org.
ORG_ADMIN_GRANTS = frozenset({Role.ORG_ADMIN, Role.AUDITOR, Role.EVALUATOR})

# The roles a key may hold without an org. Any other role acts for one org only, and
# such a key without an org (whatever wrote it) is refused, never read as "every org".
SYSTEM_WIDE_ROLES = frozenset({Role.SYSTEM_ADMIN, Role.AUDITOR})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: what every event records as its actor."""

    key_id: str
    name: str
    role: Role
    org_id: str | None  # None: system-wide
    expires_at: datetime | None = None

    @property
    def actor(self) -> Actor:
        """How the log records this caller: the key id, and the key's name for people."""
        return Actor(id=f"key:{self.key_id}", name=self.name)


class Forbidden(Exception):
    """The key may not do this. The message is the same for every cross-tenant refusal."""

    def __init__(self, detail: str = "this key may not access that resource") -> None:
        super().__init__(detail)
        self.detail = detail


def allowed(role: Role) -> frozenset[Action]:
    """What `role` may ever do (before any org is named)."""
    return _ALLOWED[role]


def authorize_role(principal: Principal, action: Action) -> None:
    """Raise `Forbidden` unless `principal`'s role may ever do `action`: checked before any lookup."""
    if action not in _ALLOWED[principal.role]:
        raise Forbidden(f"role {principal.role} may not {action}")


def authorize(principal: Principal, action: Action, *, org_id: str | None = None) -> None:
    """Raise `Forbidden` unless `principal` may do `action` (on `org_id`, when it names one)."""
    authorize_role(principal, action)
    if principal.org_id is None:
        if principal.role not in SYSTEM_WIDE_ROLES:
            raise Forbidden()  # fail closed: an org-scoped role with no org acts for none
    elif action in TENANT_ACTIONS and org_id != principal.org_id:
        # an org-scoped key acts on its own org only; naming any other looks the same
        raise Forbidden()


def authorize_grant(principal: Principal, role: Role, org_id: str | None) -> None:
    """May `principal` create (or revoke) a key with `role` scoped to `org_id`?"""
    authorize(principal, Action.MANAGE_KEYS, org_id=org_id)
    if principal.role is Role.ORG_ADMIN and (role not in ORG_ADMIN_GRANTS or org_id != principal.org_id):
        raise Forbidden(f"an org admin may only create {', '.join(sorted(ORG_ADMIN_GRANTS))} keys of its own org")
    if org_id is None and role not in SYSTEM_WIDE_ROLES:
        raise Forbidden(f"a {role} key must be scoped to one org")
    if org_id is not None and role is Role.SYSTEM_ADMIN:
        # it could still change definitions and system defaults, which every org sees
        raise Forbidden("a system-admin key is system-wide; omit org_id")
