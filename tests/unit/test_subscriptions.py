"""Subscriptions as events: the fold (`flagcore.subscriptions`), its transitions, and the notifier's directory."""

from __future__ import annotations

import base64

import pytest

from events import (
    FlagKind,
    SubscriptionChanged,
    SubscriptionDeleted,
    SubscriptionPaused,
    SubscriptionResumed,
    decode,
)
from flagcore import FlagState, InvalidTransition, transition
from flagcore.history import scope_of_stream
from flagcore.subscriptions import SubscriptionBook
from services.infra.sealing import Sealer, SealError, new_key
from services.notifier.directory import SubscriptionDirectory
from tests.support.factories import LogBuilder
from tests.support.notifier import defined, subscribed

SEALER = Sealer(new_key())
SECRET = "whsec_" + base64.b64encode(b"unit secret of thirty-two bytes!").decode()
URL = "https://hooks.example/flags"


def test_a_subscription_lives_from_created_to_deleted_and_each_step_is_folded() -> None:
    log = LogBuilder()
    created = log.append(subscribed(SEALER, "s1", URL, org_id="acme", secret=SECRET, kinds=(FlagKind.OPS,)))
    assert created is not None and created.stream == "org/acme/subscription/s1" and created.partition_key == "acme"
    book = SubscriptionBook().extend(log.events)
    [view] = book.of_org("acme")
    assert (view.id, view.kinds, view.paused, view.version) == ("s1", frozenset({FlagKind.OPS}), False, 1)
    assert book.of_org(None) == [] and book.of_org("globex") == []
    log.append(SubscriptionPaused(subscription_id="s1", org_id="acme"))
    assert SubscriptionBook().extend(log.events).of_org("acme")[0].paused
    log.append(SubscriptionResumed(subscription_id="s1", org_id="acme"))
    log.append(SubscriptionChanged(subscription_id="s1", org_id="acme", name="ops", flag_pattern="ops.*"))
    [view] = SubscriptionBook().extend(log.events).of_org("acme")
    assert (view.name, view.flag_pattern, view.paused, view.version) == ("ops", "ops.*", False, 4)
    assert view.kinds == frozenset()
    deleted = log.append(SubscriptionDeleted(subscription_id="s1", org_id="acme"))
    assert deleted is not None and deleted.new == {"deleted": True}  # the sealed secrets leave the state
    assert SubscriptionBook().extend(log.events).live == {}


def test_replaying_twice_gives_the_same_subscriptions() -> None:
    log = LogBuilder()
    log.append(subscribed(SEALER, "a", URL, secret=SECRET))
    log.append(subscribed(SEALER, "b", URL, org_id="acme", secret=SECRET))
    log.append(SubscriptionPaused(subscription_id="a", org_id=None))
    once = SubscriptionBook().extend(log.events)
    twice = SubscriptionBook().extend(log.events + log.events)
    assert once.live == twice.live


@pytest.mark.parametrize(
    "change",
    [
        SubscriptionPaused(subscription_id="nope", org_id=None),
        SubscriptionChanged(subscription_id="nope", org_id=None, name="x"),
        SubscriptionDeleted(subscription_id="nope", org_id=None),
    ],
)
def test_a_change_to_a_subscription_that_does_not_exist_is_an_invalid_transition(change: object) -> None:
    with pytest.raises(InvalidTransition):
        transition(None, change)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransition):
        transition({"deleted": True}, change)  # type: ignore[arg-type]


def test_subscription_events_round_trip_and_the_flag_fold_places_nothing_for_them() -> None:
    log = LogBuilder()
    log.append(defined("ops.kill"))
    log.append(subscribed(SEALER, "s1", URL, org_id="acme", secret=SECRET))
    for envelope in log.events:
        assert decode(envelope.to_json()) == envelope
    state = FlagState()
    for envelope in log.events:
        state.apply(envelope)
    assert "acme" not in state.tenants  # the flag state of the org is untouched
    assert scope_of_stream("org/acme/subscription/s1") is None  # and no snapshot carries it
    assert scope_of_stream("org/acme/flag/x") == "acme"


def test_the_directory_opens_the_secrets_and_follows_the_log() -> None:
    log = LogBuilder()
    directory = SubscriptionDirectory(SEALER)
    created = log.append(subscribed(SEALER, "s1", URL, secret=SECRET))
    assert created is not None and directory.observe(created)
    [s] = directory.current
    assert (s.id, s.destination.url, s.destination.secret) == ("s1", URL, SECRET)
    assert not directory.observe(created)  # a duplicate changes nothing
    paused = log.append(SubscriptionPaused(subscription_id="s1", org_id=None))
    assert paused is not None and directory.observe(paused)
    assert directory.current[0].paused
    deleted = log.append(SubscriptionDeleted(subscription_id="s1", org_id=None))
    assert deleted is not None and directory.observe(deleted)
    assert directory.current == ()
    directory.reset()
    assert not directory.observe(log.append(defined("ops.kill")))  # type: ignore[arg-type]


def test_a_subscription_sealed_with_another_key_or_moved_to_another_stream_is_left_out() -> None:
    log = LogBuilder()
    other = Sealer(new_key())
    created = log.append(subscribed(other, "s1", URL, secret=SECRET))
    assert created is not None
    directory = SubscriptionDirectory(SEALER)
    assert directory.observe(created) and directory.current == ()
    assert SubscriptionDirectory(None).observe(created)  # no key at all: folded, never delivered to
    token = SEALER.seal(b"{}", bound_to="subscription/a")
    with pytest.raises(SealError):
        SEALER.open(token, bound_to="subscription/b")
    with pytest.raises(SealError):
        Sealer("too short")
