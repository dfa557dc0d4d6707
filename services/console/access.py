"""What a signed-in role may see and do in the console: the API's own policy, asked before every call.

The console enforces the same `services.auth.policy.authorize` the APIs apply
(and the APIs check again): a hidden button is a courtesy, this is the rule.
An org-scoped user naming another org gets the same refusal whatever it names.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.auth.policy import Action, Forbidden, Principal, authorize

__all__ = ["Action", "Capabilities", "Forbidden", "home_page", "may", "require", "scoped_org"]


def may(principal: Principal, action: Action, org_id: str | None = None) -> bool:
    try:
        authorize(principal, action, org_id=org_id)
    except Forbidden:
        return False
    return True


def require(principal: Principal, action: Action, org_id: str | None = None) -> None:
    """Raise `Forbidden` (one uniform message) unless allowed."""
    if not may(principal, action, org_id):
        raise Forbidden()


def scoped_org(principal: Principal, requested: str | None) -> str | None:
    """The org a page is about: an org-scoped user's own org when none is named."""
    return requested or principal.org_id


def home_page(principal: Principal) -> str:
    """Where a role lands after sign-in: its org's flags, else the audit log, else the catalogue."""
    if principal.org_id and may(principal, Action.EVALUATE, principal.org_id):
        return f"/orgs/{principal.org_id}"
    return "/audit" if principal.org_id and may(principal, Action.READ_AUDIT, principal.org_id) else "/flags"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the pages offer a role (shown), derived from what the policy allows (enforced)."""

    edit_catalog: bool  # flag definitions and system defaults
    change_overrides: bool  # in `home_org`, or any org for a system-wide role
    evaluate: bool
    read_audit: bool
    manage_keys: bool
    read_subscriptions: bool
    home_org: str | None

    @classmethod
    def of(cls, principal: Principal) -> Capabilities:
        org = principal.org_id
        return cls(
            edit_catalog=may(principal, Action.MANAGE_FLAGS),
            change_overrides=may(principal, Action.CHANGE_OVERRIDES, org or "any"),
            evaluate=may(principal, Action.EVALUATE, org or "any"),
            read_audit=may(principal, Action.READ_AUDIT, org),
            manage_keys=may(principal, Action.MANAGE_KEYS, org),
            read_subscriptions=may(principal, Action.READ_SUBSCRIPTIONS, org),
            home_org=org,
        )
