"""The notifier's pure core: which subscriptions hear a change, and what they are told."""

from __future__ import annotations

import random

import pytest

from events import (
    FlagKind,
    KillSwitchEngaged,
    Level,
    OrgOverrideSet,
    PlatformOverrideSet,
    RolloutPercentageSet,
    SystemDefaultSet,
    Variant,
    VariantSelected,
)
from events.cloudevents import to_record
from services.notifier.messages import MAX_SLACK_CHANGES, audit_link, bulks, slack_message, webhook_body
from services.notifier.notices import Notice, NoticeFeed, describe
from services.notifier.retries import RetryPolicy, Verdict, verdict
from services.notifier.subscriptions import Destination, DestinationKind, Subscription, matches
from tests.support.factories import LogBuilder
from tests.support.notifier import defined, seal_bulk

HOOK = Destination(DestinationKind.WEBHOOK, "https://hooks.example/x", "whsec_" + "A" * 32)
CONSOLE = "https://console.example"


def fed() -> tuple[LogBuilder, NoticeFeed]:
    log = LogBuilder()
    feed = NoticeFeed()
    for change in (defined("ai.insights.enabled", group="ai"), defined("ops.kill", kind=FlagKind.OPS, group="ops")):
        envelope = log.append(change)
        assert envelope is not None
        feed.observe(envelope)
    return log, feed


def notice_of(log: LogBuilder, feed: NoticeFeed, change: object, **kw: str) -> Notice:
    envelope = log.append(change, **kw)  # type: ignore[arg-type]
    assert envelope is not None
    notice = feed.observe(envelope)
    assert notice is not None
    return notice


# --- the fold ------------------------------------------------------------------------------------


def test_a_setting_change_learns_its_flags_kind_and_group_from_the_fold() -> None:
    log, feed = fed()
    notice = notice_of(log, feed, OrgOverrideSet(flag_key="ai.insights.enabled", org_id="acme", enabled=True))
    assert (notice.kind, notice.group, notice.level) == (FlagKind.RELEASE, "ai", Level.ORG)
    assert notice.scope_text == "org acme"


def test_a_duplicate_event_is_told_once() -> None:
    log, feed = fed()
    envelope = log.append(OrgOverrideSet(flag_key="ai.insights.enabled", org_id="acme", enabled=True))
    assert envelope is not None
    assert feed.observe(envelope) is not None
    assert feed.observe(envelope) is None


def test_a_setting_of_an_unknown_flag_has_no_kind_or_group() -> None:
    log = LogBuilder()
    envelope = log.append(OrgOverrideSet(flag_key="never.defined", org_id="acme", enabled=True))
    assert envelope is not None
    notice = NoticeFeed().observe(envelope)
    assert notice is not None and (notice.kind, notice.group) == (None, None)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "unset"),
        ({"enabled": True, "rollout_percentage": None}, "on"),
        ({"enabled": False, "rollout_percentage": 25}, "off, 25%"),
        ({"kind": "ops", "group": "ops", "archived": False, "killed": True}, "ops flag, group ops, killed"),
        ({"enabled": None, "rollout_percentage": None, "variant": "green"}, "variant green"),
        ({"enabled": True, "rollout_percentage": 50,
          "split": [{"name": "blue", "weight": 300}, {"name": "green", "weight": 700}]},
         "on, 50%, split blue 30% / green 70%"),
        ({"kind": "release", "group": "checkout", "value_type": "string", "values": {"blue": "#00f"},
          "default_variant": "blue", "off_variant": "blue"}, "release flag (string), group checkout"),
    ],
)
def test_values_are_described_in_a_few_words(value: dict | None, words: str) -> None:
    assert describe(value) == words


# --- matching ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subscription", "heard"),
    [
        (Subscription("all", HOOK), True),
        (Subscription("acme", HOOK, org_id="acme"), True),
        (Subscription("other", HOOK, org_id="globex"), False),
        (Subscription("glob", HOOK, flag_pattern="ai.*"), True),
        (Subscription("glob-miss", HOOK, flag_pattern="ops.*"), False),
        (Subscription("group", HOOK, groups=frozenset({"ai", "x"})), True),
        (Subscription("group-miss", HOOK, groups=frozenset({"ops"})), False),
        (Subscription("kind", HOOK, kinds=frozenset({FlagKind.RELEASE})), True),
        (Subscription("kind-miss", HOOK, kinds=frozenset({FlagKind.OPS})), False),
        (Subscription("level", HOOK, levels=frozenset({Level.PLATFORM})), True),
        (Subscription("level-miss", HOOK, levels=frozenset({Level.ORG})), False),
        (Subscription("type", HOOK, event_types=frozenset({"PlatformOverrideSet"})), True),
        (Subscription("type-miss", HOOK, event_types=frozenset({"OrgOverrideSet"})), False),
        (Subscription("paused", HOOK, paused=True), False),
    ],
    ids=lambda v: v.id if isinstance(v, Subscription) else str(v),
)
def test_each_filter_lets_through_only_what_it_names(subscription: Subscription, heard: bool) -> None:
    log, feed = fed()
    notice = notice_of(
        log, feed, PlatformOverrideSet(flag_key="ai.insights.enabled", org_id="acme", platform="tiktok", enabled=True)
    )
    assert matches(subscription, notice) is heard


def test_an_orgs_subscription_does_not_hear_the_catalogue_and_a_system_wide_one_does() -> None:
    log, feed = fed()
    notice = notice_of(log, feed, SystemDefaultSet(flag_key="ai.insights.enabled", enabled=True))
    assert matches(Subscription("sys", HOOK), notice)
    assert not matches(Subscription("acme", HOOK, org_id="acme"), notice)


def test_definition_events_have_no_level_so_a_level_filter_does_not_hear_them() -> None:
    log, feed = fed()
    notice = notice_of(log, feed, KillSwitchEngaged(flag_key="ops.kill"))
    assert notice.level is None
    assert matches(Subscription("ops", HOOK, kinds=frozenset({FlagKind.OPS})), notice)
    assert not matches(Subscription("lvl", HOOK, levels=frozenset(Level)), notice)


# --- messages ------------------------------------------------------------------------------------


def test_a_slack_message_tells_flag_scope_previous_new_actor_reason_time_and_links_the_audit_entry() -> None:
    log, feed = fed()
    notice_of(log, feed, OrgOverrideSet(flag_key="ai.insights.enabled", org_id="acme", enabled=False))
    notice = notice_of(
        log, feed, RolloutPercentageSet(flag_key="ai.insights.enabled", level=Level.ORG, org_id="acme", percentage=25),
        reason="gradual <!channel> & more",
    )
    message = slack_message([notice], CONSOLE)
    text = str(message)
    e = notice.envelope
    assert message["blocks"][0]["text"]["text"] == "Flag change: ai.insights.enabled"
    for expected in ("`ai.insights.enabled`", "org acme", "RolloutPercentageSet: off → off, 25%", e.actor.name,
                     e.occurred_at.isoformat().replace("+00:00", "Z"), "gradual &lt;!channel&gt; &amp; more"):
        assert expected in text
    assert "<!channel>" not in text
    [section] = [b for b in message["blocks"] if "accessory" in b]
    assert section["accessory"]["url"] == f"{CONSOLE}/audit?org=acme&flag=ai.insights.enabled#event-{e.event_id}"


def test_a_level_that_only_chooses_a_variant_or_a_split_says_which() -> None:
    log, feed = fed()
    chosen = notice_of(log, feed, VariantSelected(flag_key="ai.insights.enabled", level=Level.ORG, org_id="acme",
                                                  variant="on"))
    split = (Variant(name="on", weight=250), Variant(name="off", weight=750))
    resplit = notice_of(log, feed, VariantSelected(flag_key="ai.insights.enabled", level=Level.ORG, org_id="acme",
                                                   split=split))
    assert "VariantSelected: unset → variant on" in str(slack_message([chosen], CONSOLE))
    assert "VariantSelected: variant on → split on 25% / off 75%" in str(slack_message([resplit], CONSOLE))


def test_a_bulk_change_is_one_message_and_separate_commands_are_not() -> None:
    log, feed = fed()
    changes = [OrgOverrideSet(flag_key="ai.insights.enabled", org_id=f"o{i}", enabled=True) for i in range(3)]
    bulk = [feed.observe(e) for e in seal_bulk(log, changes, reason="bulk enable")]
    alone = notice_of(log, feed, OrgOverrideSet(flag_key="ai.insights.enabled", org_id="o9", enabled=True))
    groups = bulks([*bulk, alone])  # type: ignore[list-item]
    assert [len(g) for g in groups] == [3, 1]
    message = slack_message(groups[0], CONSOLE)
    assert message["blocks"][0]["text"]["text"] == "3 flag changes"
    assert sum("accessory" in b for b in message["blocks"]) == 3


def test_a_huge_bulk_change_stays_within_slacks_block_limit_and_counts_the_rest() -> None:
    log, feed = fed()
    changes = [OrgOverrideSet(flag_key="ai.insights.enabled", org_id=f"o{i}", enabled=True) for i in range(60)]
    notices = [n for e in seal_bulk(log, changes, reason="everyone") if (n := feed.observe(e))]
    message = slack_message(notices, CONSOLE)
    assert len(message["blocks"]) <= 50
    assert f"…and {60 - MAX_SLACK_CHANGES} more changes" in str(message["blocks"][-1])


def test_a_catalogue_change_links_the_audit_page_without_an_org() -> None:
    log, feed = fed()
    notice = notice_of(log, feed, KillSwitchEngaged(flag_key="ops.kill"), reason="incident")
    assert audit_link(CONSOLE + "/", notice) == f"{CONSOLE}/audit?flag=ops.kill#event-{notice.envelope.event_id}"
    assert slack_message([notice], CONSOLE)["blocks"][0]["text"]["text"] == "Kill switch engaged: ops.kill"


def test_the_webhook_body_is_a_cloudevent_carrying_the_full_change() -> None:
    log, feed = fed()
    notice = notice_of(log, feed, OrgOverrideSet(flag_key="ai.insights.enabled", org_id="acme", enabled=True))
    body = webhook_body(notice)
    headers = {name: raw.decode() for name, raw in to_record(notice.envelope).headers}
    for name, value in headers.items():  # the same attributes as the topic's CloudEvents headers
        assert body[name.removeprefix("ce_") if name != "content-type" else "datacontenttype"] == value
    assert body["data"] == notice.envelope.model_dump(mode="json")


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "refused", "expected"),
    [
        (200, False, Verdict.DELIVERED), (204, False, Verdict.DELIVERED), (None, False, Verdict.RETRY),
        (500, False, Verdict.RETRY), (503, False, Verdict.RETRY), (429, False, Verdict.RETRY),
        (408, False, Verdict.RETRY), (400, False, Verdict.GIVE_UP), (404, False, Verdict.GIVE_UP),
        (301, False, Verdict.GIVE_UP), (None, True, Verdict.GIVE_UP),
    ],
)
def test_what_an_answer_means(status: int | None, refused: bool, expected: Verdict) -> None:
    assert verdict(status, refused=refused) is expected


def test_backoff_doubles_up_to_its_cap_with_full_jitter_and_stops_at_the_limit() -> None:
    policy = RetryPolicy(attempts=4, base=0.5, cap=1.5)
    assert [policy.ceiling(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 1.5]
    rng = random.Random(7)
    pauses = [policy.pause(3, rng) for _ in range(500)]
    assert all(0 <= p <= 1.5 for p in pauses)
    assert min(pauses) < 0.1 and max(pauses) > 1.4  # spread over the whole range, not clustered at the ceiling
    assert [policy.more_after(n) for n in (1, 3, 4)] == [True, True, False]
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
