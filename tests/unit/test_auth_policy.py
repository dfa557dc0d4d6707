"""The policy as one table: role × action × which org is named → allowed or refused; and who may mint which key."""

from __future__ import annotations

import pytest

from services.auth.policy import Action, Forbidden, Principal, Role, authorize, authorize_grant

A, B = "org-a", "org-b"

PRINCIPALS = {
    "system-admin": Principal("k1", "ops", Role.SYSTEM_ADMIN, None),
    "org-admin of A": Principal("k2", "a admin", Role.ORG_ADMIN, A),
    "auditor of A": Principal("k3", "a auditor", Role.AUDITOR, A),
    "system auditor": Principal("k4", "auditor", Role.AUDITOR, None),
    "evaluator of A": Principal("k5", "a app", Role.EVALUATOR, A),
    # Keys the API never mints (authorize_grant refuses them), should one exist anyway:
    # an org-scoped role with no org acts for no org, never for every org.
    "evaluator of no org": Principal("k6", "stray", Role.EVALUATOR, None),
    "org-admin of no org": Principal("k7", "stray", Role.ORG_ADMIN, None),
}

# For each principal and action: allowed (Y) or refused (-) when the request names
# its own org A, another org B, and no org at all.
# Columns: manage-flags, change-overrides, evaluate, read-audit, read-catalog, manage-keys,
# manage-subscriptions, read-subscriptions, acknowledge-log.
TABLE = {
    "system-admin":        ("YYY", "YYY", "YYY", "YYY", "YYY", "YYY", "YYY", "YYY", "YYY"),
    "org-admin of A":      ("---", "Y--", "Y--", "Y--", "YYY", "Y--", "Y--", "Y--", "---"),
    "auditor of A":        ("---", "---", "---", "Y--", "YYY", "---", "---", "Y--", "---"),
    "system auditor":      ("---", "---", "---", "YYY", "YYY", "---", "---", "YYY", "---"),
    "evaluator of A":      ("---", "---", "Y--", "---", "YYY", "---", "---", "---", "---"),
    "evaluator of no org": ("---", "---", "---", "---", "---", "---", "---", "---", "---"),
    "org-admin of no org": ("---", "---", "---", "---", "---", "---", "---", "---", "---"),
}
ACTIONS = (
    Action.MANAGE_FLAGS,
    Action.CHANGE_OVERRIDES,
    Action.EVALUATE,
    Action.READ_AUDIT,
    Action.READ_CATALOG,
    Action.MANAGE_KEYS,
    Action.MANAGE_SUBSCRIPTIONS,
    Action.READ_SUBSCRIPTIONS,
    Action.ACKNOWLEDGE_LOG,
)
SCOPES = {"own org": A, "other org": B, "no org": None}

CELLS = [
    pytest.param(who, action, scope, row[i][j] == "Y", id=f"{who}-{action}-{scope}")
    for who, row in TABLE.items()
    for i, action in enumerate(ACTIONS)
    for j, scope in enumerate(SCOPES)
]


def test_the_table_covers_every_role_and_action() -> None:
    assert set(ACTIONS) == set(Action)
    assert {p.role for p in PRINCIPALS.values()} == set(Role)
    assert set(TABLE) == set(PRINCIPALS)


@pytest.mark.parametrize(("who", "action", "scope", "allowed"), CELLS)
def test_authorize(who: str, action: Action, scope: str, allowed: bool) -> None:
    principal = PRINCIPALS[who]
    if allowed:
        authorize(principal, action, org_id=SCOPES[scope])
    else:
        with pytest.raises(Forbidden):
            authorize(principal, action, org_id=SCOPES[scope])


@pytest.mark.parametrize("who", ["org-admin of A", "auditor of A", "evaluator of A"])
@pytest.mark.parametrize("action", [a for a in ACTIONS if a is not Action.READ_CATALOG])
def test_every_cross_tenant_refusal_reads_the_same_whatever_org_it_names(who: str, action: Action) -> None:
    """Another org that exists, one that does not, a case variant of its own: one message."""
    details = set()
    for org in (B, "no-such-org", A.upper(), f"{A} ", None):
        with pytest.raises(Forbidden) as refused:
            authorize(PRINCIPALS[who], action, org_id=org)
        details.add(refused.value.detail)
    if TABLE[who][ACTIONS.index(action)][0] == "Y":  # the role may act, only not there
        assert details == {Forbidden().detail}
    assert len(details) == 1


def test_a_refusal_for_the_role_says_what_the_role_lacks_not_what_exists() -> None:
    with pytest.raises(Forbidden) as refused:
        authorize(PRINCIPALS["evaluator of A"], Action.CHANGE_OVERRIDES, org_id=A)
    assert refused.value.detail == "role evaluator may not change-overrides"
    assert A not in refused.value.detail


# --- minting keys: which role, for which org -------------------------------------------------------------

#                                 (role, org of the new key) → Y/-
GRANTS = [
    (Role.SYSTEM_ADMIN, None),
    (Role.SYSTEM_ADMIN, A),
    (Role.ORG_ADMIN, A),
    (Role.ORG_ADMIN, B),
    (Role.ORG_ADMIN, None),
    (Role.AUDITOR, A),
    (Role.AUDITOR, B),
    (Role.AUDITOR, None),
    (Role.EVALUATOR, A),
    (Role.EVALUATOR, B),
    (Role.EVALUATOR, None),
]
GRANT_TABLE = {
    #                       sa/- sa/A oa/A oa/B oa/- au/A au/B au/- ev/A ev/B ev/-
    "system-admin":        "Y    -    Y    Y    -    Y    Y    Y    Y    Y    -",
    "org-admin of A":      "-    -    Y    -    -    Y    -    -    Y    -    -",
    "auditor of A":        "-    -    -    -    -    -    -    -    -    -    -",
    "system auditor":      "-    -    -    -    -    -    -    -    -    -    -",
    "evaluator of A":      "-    -    -    -    -    -    -    -    -    -    -",
    "evaluator of no org": "-    -    -    -    -    -    -    -    -    -    -",
    "org-admin of no org": "-    -    -    -    -    -    -    -    -    -    -",
}
GRANT_CELLS = [
    pytest.param(who, role, org, mark == "Y", id=f"{who}-grants-{role}-of-{org or 'no org'}")
    for who, marks in GRANT_TABLE.items()
    for (role, org), mark in zip(GRANTS, marks.split(), strict=True)
]


@pytest.mark.parametrize(("who", "role", "org", "allowed"), GRANT_CELLS)
def test_authorize_grant(who: str, role: Role, org: str | None, allowed: bool) -> None:
    if allowed:
        authorize_grant(PRINCIPALS[who], role, org)
    else:
        with pytest.raises(Forbidden):
            authorize_grant(PRINCIPALS[who], role, org)


def test_an_org_admin_naming_another_org_gets_the_uniform_refusal() -> None:
    for org in (B, "no-such-org"):
        with pytest.raises(Forbidden) as refused:
            authorize_grant(PRINCIPALS["org-admin of A"], Role.EVALUATOR, org)
        assert refused.value.detail == Forbidden().detail


def test_the_actor_is_the_key_never_anything_the_caller_says() -> None:
    actor = PRINCIPALS["org-admin of A"].actor
    assert (actor.id, actor.name) == ("key:k2", "a admin")
