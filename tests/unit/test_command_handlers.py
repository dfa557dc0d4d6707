"""The command handlers: which events each request produces, with no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from events import FlagKind, Level, Platform, Scope
from flagcore import InvalidTransition, transition
from services.command.commands import (
    UNSET,
    ArchiveFlag,
    ClearOverride,
    DefineFlag,
    SetSetting,
    UpdateFlag,
)
from services.command.errors import InvalidCommand, UnknownFlag
from services.command.handlers import decide

KEY = "ai.insights.enabled"
LIVE = {"kind": "release", "description": "d", "owner": None, "group": "ai", "archived": False}
ARCHIVED = {**LIVE, "archived": True}

ORG = Scope.org("acme")
PLATFORM = Scope.for_platform("acme", Platform.TIKTOK)
USER = Scope.user("acme", "u-1")
SYSTEM = Scope.system()


def setting(scope: Scope, enabled: Any = UNSET, rollout: Any = UNSET) -> SetSetting:
    return SetSetting(scope=scope, flag_key=KEY, enabled=enabled, rollout_percentage=rollout, reason="r")


def v(enabled: bool | None, rollout: int | None) -> dict[str, Any]:
    return {"enabled": enabled, "rollout_percentage": rollout}


def described(changes: list[Any]) -> list[tuple[str, Any]]:
    """(type, the field that matters) per change, for compact expectations."""
    out = []
    for c in changes:
        detail = getattr(c, "enabled", getattr(c, "percentage", None))
        out.append((c.type, detail))
    return out


def replay(current: dict[str, Any] | None, changes: list[Any]) -> dict[str, Any] | None:
    for change in changes:
        current = transition(current, change)
    return current


SETTING_CASES = [
    # scope, current value, enabled, rollout, expected events, expected final value
    pytest.param(ORG, None, True, UNSET, [("OrgOverrideSet", True)], v(True, None), id="org-set-on"),
    pytest.param(ORG, None, False, UNSET, [("OrgOverrideSet", False)], v(False, None), id="org-set-off"),
    pytest.param(ORG, v(True, None), True, UNSET, [], v(True, None), id="org-same-value-is-noop"),
    pytest.param(ORG, v(True, None), False, UNSET, [("OrgOverrideSet", False)], v(False, None), id="org-flip"),
    pytest.param(ORG, v(True, None), None, UNSET, [("OrgOverrideCleared", None)], None, id="org-clear"),
    pytest.param(ORG, None, None, UNSET, [], None, id="org-clear-nothing-is-noop"),
    pytest.param(ORG, None, UNSET, 30, [("RolloutPercentageSet", 30)], v(None, 30), id="org-rollout-only"),
    pytest.param(ORG, v(True, 30), UNSET, 30, [], v(True, 30), id="org-same-rollout-is-noop"),
    pytest.param(
        ORG, v(True, 30), UNSET, None, [("RolloutPercentageSet", None)], v(True, None), id="org-rollout-removed"
    ),
    pytest.param(ORG, v(True, 30), False, UNSET, [("OrgOverrideSet", False)], v(False, 30), id="org-set-keeps-rollout"),
    pytest.param(
        ORG,
        None,
        True,
        40,
        [("OrgOverrideSet", True), ("RolloutPercentageSet", 40)],
        v(True, 40),
        id="org-set-and-rollout",
    ),
    pytest.param(
        ORG,
        v(True, 30),
        None,
        50,
        [("OrgOverrideCleared", None), ("RolloutPercentageSet", 50)],
        v(None, 50),
        id="org-clear-plus-rollout",
    ),
    pytest.param(
        ORG,
        v(True, 30),
        None,
        UNSET,
        [("OrgOverrideCleared", None)],
        None,
        id="org-clear-removes-the-rollout-too",
    ),
    pytest.param(ORG, v(True, 30), None, None, [("OrgOverrideCleared", None)], None, id="org-clear-both"),
    pytest.param(ORG, v(None, 30), None, UNSET, [("OrgOverrideCleared", None)], None, id="org-clear-rollout-only"),
    pytest.param(ORG, None, None, UNSET, [], None, id="org-clear-nothing-set"),
    pytest.param(
        ORG, v(True, 30), None, 10, [("OrgOverrideCleared", None), ("RolloutPercentageSet", 10)], v(None, 10),
        id="org-clear-with-new-rollout",
    ),
    pytest.param(PLATFORM, None, True, UNSET, [("PlatformOverrideSet", True)], v(True, None), id="platform-set"),
    pytest.param(PLATFORM, v(False, None), None, UNSET, [("PlatformOverrideCleared", None)], None, id="platform-clear"),
    pytest.param(
        USER,
        None,
        False,
        10,
        [("UserOverrideSet", False), ("RolloutPercentageSet", 10)],
        v(False, 10),
        id="user-set-and-rollout",
    ),
    pytest.param(USER, v(False, None), None, UNSET, [("UserOverrideCleared", None)], None, id="user-clear"),
    pytest.param(SYSTEM, None, True, UNSET, [("SystemDefaultSet", True)], v(True, None), id="system-set"),
    pytest.param(SYSTEM, v(True, None), True, UNSET, [], v(True, None), id="system-noop"),
    pytest.param(SYSTEM, v(True, None), UNSET, 25, [("RolloutPercentageSet", 25)], v(True, 25), id="system-rollout"),
]


@pytest.mark.parametrize(("scope", "current", "enabled", "rollout", "expected", "final"), SETTING_CASES)
def test_setting_produces_the_fewest_events_reaching_the_target(
    scope: Scope, current: Any, enabled: Any, rollout: Any, expected: list[Any], final: Any
) -> None:
    changes = decide(setting(scope, enabled, rollout), current=current, definition=LIVE)

    assert described(changes) == expected
    assert replay(current, changes) == final
    assert all(c.stream == scope.stream(KEY) for c in changes)


def test_rollout_events_carry_the_scope_of_the_request() -> None:
    (change,) = decide(setting(PLATFORM, rollout=5), current=None, definition=LIVE)

    assert change.scope == PLATFORM
    assert (change.level, change.org_id, change.platform, change.user_id) == (
        Level.PLATFORM,
        "acme",
        Platform.TIKTOK,
        None,
    )


def test_a_system_default_cannot_be_cleared() -> None:
    with pytest.raises(InvalidCommand) as caught:
        decide(setting(SYSTEM, enabled=None), current=v(True, None), definition=LIVE)
    assert caught.value.field == "enabled"


@pytest.mark.parametrize("definition", [None, ARCHIVED], ids=["undefined", "archived"])
@pytest.mark.parametrize("scope", [SYSTEM, ORG, PLATFORM, USER], ids=lambda s: str(s.level))
def test_settings_need_a_live_flag(scope: Scope, definition: Any) -> None:
    with pytest.raises(UnknownFlag) as caught:
        decide(setting(scope, enabled=True), current=None, definition=definition)
    assert caught.value.flag_key == KEY
    assert caught.value.archived is (definition is not None)


@pytest.mark.parametrize(
    ("current", "expected"),
    [(v(True, 20), ["OrgOverrideCleared"]), (None, [])],
    ids=["clears", "nothing-to-clear"],
)
def test_clear_override(current: Any, expected: list[str]) -> None:
    command = ClearOverride(scope=ORG, flag_key=KEY, reason="r")
    assert [c.type for c in decide(command, current=current, definition=LIVE)] == expected


def test_clear_on_an_archived_flag_is_unknown_flag() -> None:
    with pytest.raises(UnknownFlag):
        decide(ClearOverride(scope=USER, flag_key=KEY, reason="r"), current=v(True, None), definition=ARCHIVED)


# --- definitions ---------------------------------------------------------------------


def test_define_a_new_flag() -> None:
    command = DefineFlag(flag_key=KEY, group="ai", kind=FlagKind.EXPERIMENT, owner="ai-team", reason="r")
    (change,) = decide(command, current=None, definition=None)

    assert change.type == "FlagDefined"
    assert (change.kind, change.group, change.owner, change.description) == (
        FlagKind.EXPERIMENT,
        "ai",
        "ai-team",
        "",
    )


def test_defining_twice_is_an_invalid_transition() -> None:
    with pytest.raises(InvalidTransition):
        decide(DefineFlag(flag_key=KEY, group="ai", reason="r"), current=LIVE, definition=LIVE)


@pytest.mark.parametrize(
    ("fields", "expected_new"),
    [
        ({"description": "new text"}, {**LIVE, "description": "new text"}),
        ({"owner": "ai-team", "kind": FlagKind.OPS}, {**LIVE, "owner": "ai-team", "kind": "ops"}),
        ({"group": "ml"}, {**LIVE, "group": "ml"}),
    ],
    ids=["description", "owner-and-kind", "group"],
)
def test_update_carries_the_full_new_set(fields: dict[str, Any], expected_new: dict[str, Any]) -> None:
    (change,) = decide(UpdateFlag(flag_key=KEY, reason="r", **fields), current=LIVE, definition=LIVE)

    assert change.type == "FlagUpdated"
    assert transition(LIVE, change) == expected_new


def test_update_to_the_same_values_is_a_noop() -> None:
    command = UpdateFlag(flag_key=KEY, reason="r", description="d", owner=None)
    assert decide(command, current=LIVE, definition=LIVE) == []


def test_update_refusals() -> None:
    with pytest.raises(UnknownFlag):
        decide(UpdateFlag(flag_key=KEY, reason="r", description="x"), current=None, definition=None)
    with pytest.raises(InvalidTransition):
        decide(UpdateFlag(flag_key=KEY, reason="r", description="x"), current=ARCHIVED, definition=ARCHIVED)


def test_update_with_a_value_the_event_schema_refuses_names_the_field() -> None:
    with pytest.raises(InvalidCommand) as caught:
        decide(UpdateFlag(flag_key=KEY, reason="r", group="g" * 65), current=LIVE, definition=LIVE)
    assert caught.value.field == "group"


def test_archive() -> None:
    command = ArchiveFlag(flag_key=KEY, reason="r")
    assert [c.type for c in decide(command, current=LIVE, definition=LIVE)] == ["FlagArchived"]
    assert decide(command, current=ARCHIVED, definition=ARCHIVED) == []  # archiving twice: no-op
    with pytest.raises(UnknownFlag):
        decide(command, current=None, definition=None)
