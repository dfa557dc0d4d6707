"""Operational alerts, pure: which are derived, who hears them, how they read, and that each is told once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from events import FlagKind, KillSwitchEngaged, KillSwitchReleased, OrgOverrideSet
from events.vocabulary import AlertKind
from services.command.subscriptions import CreateSubscriptionRequest
from services.notifier.alerting import AlertTeller
from services.notifier.alerts import (
    AlertType,
    DeadLetterSeen,
    LagAlarm,
    LagClock,
    PartitionLag,
    alert_matches,
    dead_letter_alert,
    kill_switch_alert,
)
from services.notifier.deliveries import Delivery, compose_alert
from services.notifier.messages import alert_slack_message, alert_webhook_body
from services.notifier.notices import Notice, NoticeFeed
from services.notifier.subscriptions import Destination, DestinationKind, Subscription, matches
from tests.support.factories import LogBuilder
from tests.support.notifier import defined

HOOK = Destination(DestinationKind.WEBHOOK, "https://hooks.example/x", "whsec_" + "A" * 32)
SLACK = Destination(DestinationKind.SLACK, "https://hooks.slack.com/services/T/B/X")
AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ALL_ALERTS = frozenset(k.value for k in AlertKind)


def sub(sid: str = "s", *, org: str | None = None, types: frozenset[str] = ALL_ALERTS, **kw: object) -> Subscription:
    return Subscription(sid, HOOK, org_id=org, event_types=types, **kw)  # type: ignore[arg-type]


def kill_notices() -> tuple[Notice, Notice, Notice]:
    log, feed = LogBuilder(), NoticeFeed()
    for change in (defined("ops.payments", kind=FlagKind.OPS, group="ops"), defined("ai.insights.enabled")):
        envelope = log.append(change)
        assert envelope is not None
        feed.observe(envelope)
    found = []
    for change in (KillSwitchEngaged(flag_key="ops.payments"), KillSwitchReleased(flag_key="ops.payments"),
                   OrgOverrideSet(flag_key="ai.insights.enabled", org_id="acme", enabled=True)):
        envelope = log.append(change, reason="payments down")  # type: ignore[arg-type]
        assert envelope is not None
        notice = feed.observe(envelope)
        assert notice is not None
        found.append(notice)
    return found[0], found[1], found[2]


# --- kill switches ------------------------------------------------------------


def test_a_kill_switch_engaged_and_released_each_make_one_alert_with_an_id_of_its_own_event() -> None:
    engaged, released, other = kill_notices()
    a = kill_switch_alert(engaged, link="https://console/audit#e")
    b = kill_switch_alert(released, link="https://console/audit#e")
    assert a is not None and b is not None
    assert (a.type, a.kind, a.resolves, a.flag_key, a.flag_kind, a.group) == (
        AlertType.KILL_SWITCH_ENGAGED, AlertKind.KILL_SWITCH, False, "ops.payments", FlagKind.OPS, "ops")
    assert (b.type, b.resolves, b.title) == (AlertType.KILL_SWITCH_RELEASED, True, "Kill switch released: ops.payments")
    assert a.id != engaged.envelope.event_id  # the change's own delivery keeps the event id
    assert kill_switch_alert(engaged, link="x") == kill_switch_alert(engaged, link="x")  # derived again: same id
    assert a.id != b.id
    assert kill_switch_alert(other, link="x") is None
    assert a.data["reason"] == "payments down" and a.data["engaged"] is True


@pytest.mark.parametrize(("subscription", "hears"), [
    (sub(), True),
    (sub(org="acme"), True),  # a kill switch holds in every org: each org's opted-in subscriptions hear it
    (sub(types=frozenset()), False),  # opt-in only: an empty filter hears every change, no alert
    (sub(types=frozenset({"KillSwitchEngaged"})), False),  # the change, not the alert
    (sub(types=frozenset({AlertKind.DEAD_LETTER.value})), False),
    (sub(flag_pattern="ops.*"), True),
    (sub(flag_pattern="ai.*"), False),
    (sub(groups=frozenset({"billing"})), False),
    (sub(kinds=frozenset({FlagKind.OPS})), True),
    (sub(kinds=frozenset({FlagKind.RELEASE})), False),
    (sub(paused=True), False),
])  # fmt: skip
def test_who_hears_a_kill_switch_alert(subscription: Subscription, hears: bool) -> None:
    engaged, _, _ = kill_notices()
    alert = kill_switch_alert(engaged, link="x")
    assert alert is not None
    assert alert_matches(subscription, alert) is hears


def test_an_alerts_only_subscription_hears_no_flag_change() -> None:
    engaged, _, change = kill_notices()
    alerts_only = sub(types=frozenset({AlertKind.KILL_SWITCH.value}))
    assert not matches(alerts_only, engaged) and not matches(alerts_only, change)


def test_system_alerts_go_to_system_wide_subscriptions_only() -> None:
    letters = dead_letter_alert([DeadLetterSeen(0, 7, "undecodable: bad json")], topic="t.dlq", at=AT)
    assert alert_matches(sub(), letters)
    assert not alert_matches(sub(org="acme"), letters)
    assert not alert_matches(sub(types=frozenset({AlertKind.PROJECTOR_LAG.value})), letters)


def test_the_command_api_accepts_alert_kinds_as_event_types_and_names_a_wrong_one() -> None:
    body = {"name": "ops", "reason": "r", "destination": {"kind": "slack", "url": "https://hooks.slack.com/x"}}
    ok = CreateSubscriptionRequest.model_validate({**body, "event_types": ["alert.kill_switch", "KillSwitchEngaged"]})
    assert ok.event_types == ["alert.kill_switch", "KillSwitchEngaged"]
    with pytest.raises(ValueError, match=r"alert\.bogus"):
        CreateSubscriptionRequest.model_validate({**body, "event_types": ["alert.bogus"]})


# --- dead letters -------------------------------------------------------------


def test_dead_letters_are_read_from_the_projectors_headers_and_told_as_one_alert_per_burst() -> None:
    headers = [("ce_id", b"0d6c"), ("dlq_reason", b"chain break: stream x"), ("dlq_topic", b"flags.changes"),
               ("dlq_partition", b"2"), ("dlq_offset", b"41")]  # fmt: skip
    seen = DeadLetterSeen.of(0, 5, headers)
    assert seen == DeadLetterSeen(0, 5, "chain break: stream x", "flags.changes", 2, 41, "0d6c")
    burst = [seen, DeadLetterSeen(0, 6, "undecodable: x"), DeadLetterSeen(0, 7, "undecodable: y")]
    alert = dead_letter_alert(burst, topic="flags.changes.dlq", at=AT)
    assert alert.title == "3 dead letters from the projector"
    assert alert.data["reasons"] == {"chain break": 1, "undecodable": 2}
    assert alert.data["letters"][0]["source_offset"] == 41
    assert dead_letter_alert(burst, topic="flags.changes.dlq", at=AT + timedelta(hours=1)).id == alert.id
    assert dead_letter_alert(burst[1:], topic="flags.changes.dlq", at=AT).id != alert.id
    assert DeadLetterSeen.of(1, 0, None).reason == "unknown"


# --- the projector's lag ------------------------------------------------------


def test_lag_is_counted_from_when_the_oldest_unapplied_record_was_first_seen() -> None:
    clock = LagClock()
    assert clock.measure({0: 10, 1: 4}, {0: 10, 1: 4}, now=100.0) == {0: PartitionLag(0, 0.0), 1: PartitionLag(0, 0.0)}
    assert clock.measure({0: 15}, {0: 10}, now=101.0) == {0: PartitionLag(5, 0.0)}
    assert clock.measure({0: 20}, {0: 10}, now=104.0) == {0: PartitionLag(10, 3.0)}  # offsets 10-14 since 101
    assert clock.measure({0: 20}, {0: 16}, now=106.0) == {0: PartitionLag(4, 2.0)}  # 15-19 seen first at 104
    assert clock.measure({0: 20}, {0: 20}, now=107.0) == {0: PartitionLag(0, 0.0)}
    assert clock.measure({0: 21}, {0: 20}, now=108.0) == {0: PartitionLag(1, 0.0)}
    assert clock.measure({0: 21}, {0: 20}, now=110.5) == {0: PartitionLag(1, 2.5)}  # the end did not move: kept
    assert LagClock().measure({3: 9}, {}, now=5.0) == {3: PartitionLag(9, 0.0)}  # nothing applied: counts from now


def lags(seconds: float) -> dict[int, PartitionLag]:
    return {0: PartitionLag(3 if seconds else 0, seconds), 1: PartitionLag(0, 0.0)}


def test_lag_high_is_told_once_until_recovered_then_recovered_once() -> None:
    alarm = LagAlarm(threshold_seconds=30, topic="flags.changes", group="flags-projector")
    said = [alarm.judge(lags(s), AT + timedelta(seconds=i)) for i, s in enumerate([0, 10, 31, 45, 60, 20, 14, 0, 2])]
    told = [(i, a.type) for i, a in enumerate(said) if a is not None]
    assert told == [(2, AlertType.PROJECTOR_LAG_HIGH), (6, AlertType.PROJECTOR_LAG_RECOVERED)]  # 20 s: not yet
    high, recovered = said[2], said[6]
    assert high is not None and recovered is not None
    assert recovered.data["high_alert_id"] == str(high.id) and recovered.id != high.id and recovered.resolves
    assert high.data["partitions"]["0"] == {"records": 3, "seconds": 31}
    again = alarm.judge(lags(40), AT + timedelta(minutes=5))
    assert again is not None and again.type is AlertType.PROJECTOR_LAG_HIGH and again.id != high.id  # a new episode
    assert alarm.judge({}, AT) is None  # nothing measured: nothing judged


# --- what is sent -------------------------------------------------------------


def test_an_alert_reads_clearly_in_slack_and_as_a_cloudevent_keyed_by_its_id() -> None:
    engaged, released, _ = kill_notices()
    alert = kill_switch_alert(engaged, link="https://console.example/audit#event-1")
    assert alert is not None
    slack = alert_slack_message(alert)
    header = slack["blocks"][0]["text"]["text"]
    assert header == ":rotating_light: Kill switch engaged: ops.payments"
    facts = [f["text"] for f in slack["blocks"][1]["fields"]]
    assert "*Reason*\npayments down" in facts and slack["blocks"][1]["accessory"]["url"].endswith("#event-1")
    assert str(alert.id) in slack["blocks"][2]["elements"][0]["text"]
    good = kill_switch_alert(released, link="x")
    assert good is not None and alert_slack_message(good)["blocks"][0]["text"]["text"].startswith(":large_green")
    body = alert_webhook_body(alert)
    assert (body["specversion"], body["id"], body["type"], body["subject"]) == (
        "1.0", str(alert.id), "flagstream.alert.kill_switch.engaged", "ops.payments")
    assert body["data"]["kind"] == "alert.kill_switch" and body["data"]["flag_key"] == "ops.payments"
    delivery = compose_alert(sub(), alert)
    assert (delivery.event_ids, delivery.message_id) == ((alert.id,), str(alert.id))
    assert orjson.loads(delivery.body) == orjson.loads(orjson.dumps(body))
    assert "blocks" in orjson.loads(compose_alert(Subscription("sl", SLACK, event_types=ALL_ALERTS), alert).body)


async def test_the_teller_queues_one_delivery_per_opted_in_subscription() -> None:
    engaged, _, _ = kill_notices()
    alert = kill_switch_alert(engaged, link="x")
    assert alert is not None
    queued: list[Delivery] = []

    def submit(delivery: Delivery) -> asyncio.Future[None]:
        queued.append(delivery)
        return asyncio.get_running_loop().create_future()

    subscriptions = [sub("yes"), sub("org", org="acme"), sub("no", types=frozenset()), sub("off", paused=True)]
    told: list[tuple[str, int]] = []
    teller = AlertTeller(lambda: subscriptions, submit, told=lambda a, n: told.append((a.type.value, n)))
    assert len(teller.tell(alert)) == 2
    assert [d.subscription.id for d in queued] == ["yes", "org"]
    assert told == [("flagstream.alert.kill_switch.engaged", 2)]
