"""Operational alerts, derived and de-duplicated: kill switches, dead letters, the projector's lag. Pure.

An alert is not an event of the log: the notifier derives it (from a kill-switch event, from records on
the projector's dead-letter topic, from the projector's lag) and tells it through the subscriptions that
opt in to its kind (`events.vocabulary.AlertKind` among their `event_types`). Its id is stable (a UUID5 of
what it is about), so it is the Standard Webhooks `webhook-id`, the delivery log's key, and a second
derivation of the same alert (after a restart) is recognised as already told.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any, NamedTuple
from uuid import UUID, uuid5

from events import FlagKind
from events.vocabulary import AlertKind
from services.notifier.notices import Notice
from services.notifier.subscriptions import Subscription

__all__ = [
    "Alert",
    "AlertKind",
    "AlertType",
    "DeadLetterSeen",
    "LagAlarm",
    "LagClock",
    "PartitionLag",
    "alert_matches",
    "dead_letter_alert",
    "kill_switch_alert",
]

# The namespace of alert ids: uuid5(ALERTS, what the alert is about). Never change it: ids would change.
ALERTS = UUID("6f1c7a52-3d0e-4c39-9a57-2b8f2f0c5a11")
MAX_LETTERS_LISTED = 20  # per dead-letter alert: the rest is counted


class AlertType(StrEnum):
    """The CloudEvents `type` of an alert's webhook body."""

    KILL_SWITCH_ENGAGED = "flagstream.alert.kill_switch.engaged"
    KILL_SWITCH_RELEASED = "flagstream.alert.kill_switch.released"
    DEAD_LETTERS = "flagstream.alert.dead_letters"
    PROJECTOR_LAG_HIGH = "flagstream.alert.projector_lag.high"
    PROJECTOR_LAG_RECOVERED = "flagstream.alert.projector_lag.recovered"


KIND_OF = {
    AlertType.KILL_SWITCH_ENGAGED: AlertKind.KILL_SWITCH,
    AlertType.KILL_SWITCH_RELEASED: AlertKind.KILL_SWITCH,
    AlertType.DEAD_LETTERS: AlertKind.DEAD_LETTER,
    AlertType.PROJECTOR_LAG_HIGH: AlertKind.PROJECTOR_LAG,
    AlertType.PROJECTOR_LAG_RECOVERED: AlertKind.PROJECTOR_LAG,
}
RESOLVING = frozenset({AlertType.KILL_SWITCH_RELEASED, AlertType.PROJECTOR_LAG_RECOVERED})


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert to tell. `org_id` None: about the whole system (a kill switch is: it holds in every org).

    `facts` are what a Slack message shows, in order; `data` is the webhook body's `data`.
    """

    id: UUID
    type: AlertType
    title: str
    at: datetime
    org_id: str | None = None
    flag_key: str | None = None
    flag_kind: FlagKind | None = None
    group: str | None = None
    facts: tuple[tuple[str, str], ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    link: str | None = None

    @property
    def kind(self) -> AlertKind:
        return KIND_OF[self.type]

    @property
    def resolves(self) -> bool:
        """A good-news alert (released, recovered): it ends what an earlier one reported."""
        return self.type in RESOLVING


def alert_matches(subscription: Subscription, alert: Alert) -> bool:
    """Whether `subscription` opted in to `alert`.

    Opt-in only: the alert's kind must be among its `event_types`. A kill switch's alert goes to
    system-wide subscriptions and to every org's (a kill switch holds in every org; one of an org's
    flags, were it ever org-scoped, only to that org's), through their flag pattern, group and kind
    filters. Dead letters and the projector's lag concern the whole system: system-wide subscriptions only.
    """
    s = subscription
    if s.paused or alert.kind.value not in s.event_types:
        return False
    if alert.kind is not AlertKind.KILL_SWITCH:
        return s.org_id is None
    if alert.org_id is not None and s.org_id not in (None, alert.org_id):
        return False
    if alert.flag_key is None or not fnmatchcase(alert.flag_key, s.flag_pattern):
        return False
    if s.groups and alert.group not in s.groups:
        return False
    return not (s.kinds and alert.flag_kind not in s.kinds)


# --- kill switches ------------------------------------------------------------


def kill_switch_alert(notice: Notice, *, link: str) -> Alert | None:
    """The alert of a kill switch engaged or released; None for any other change. One per event."""
    e = notice.envelope
    if e.type == "KillSwitchEngaged":
        kind, verb = AlertType.KILL_SWITCH_ENGAGED, "engaged"
    elif e.type == "KillSwitchReleased":
        kind, verb = AlertType.KILL_SWITCH_RELEASED, "released"
    else:
        return None
    effect = "off in every org, over every level" if verb == "engaged" else "the levels decide again"
    return Alert(
        id=uuid5(ALERTS, f"kill-switch/{e.event_id}"),
        type=kind,
        title=f"Kill switch {verb}: {notice.flag_key}",
        at=e.occurred_at,
        org_id=e.org_id,
        flag_key=notice.flag_key,
        flag_kind=notice.kind,
        group=notice.group,
        facts=(
            ("Flag", f"`{notice.flag_key}`"),
            ("Effect", effect),
            ("Actor", f"{e.actor.name} (`{e.actor.id}`)"),
            ("Reason", e.reason),
        ),
        data={
            "flag_key": notice.flag_key,
            "engaged": verb == "engaged",
            "group": notice.group,
            "flag_kind": None if notice.kind is None else notice.kind.value,
            "event_id": str(e.event_id),
            "stream": e.stream,
            "version": e.version,
            "actor": {"id": e.actor.id, "name": e.actor.name},
            "reason": e.reason,
        },
        link=link,
    )


# --- dead letters -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetterSeen:
    """A record on the dead-letter topic, as its headers describe it (`flaglog.DeadLetter.out_headers`)."""

    partition: int  # on the dead-letter topic
    offset: int
    reason: str
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    event_id: str | None = None  # the rejected record's `ce_id`, when it had one

    @classmethod
    def of(cls, partition: int, offset: int, headers: Sequence[tuple[str, bytes]] | None) -> DeadLetterSeen:
        found = {k: v.decode("utf-8", "replace") for k, v in headers or () if isinstance(v, bytes)}

        def number(name: str) -> int | None:
            value = found.get(name, "")
            return int(value) if value.isdigit() else None

        return cls(partition, offset, found.get("dlq_reason") or "unknown", found.get("dlq_topic"),
                   number("dlq_partition"), number("dlq_offset"), found.get("ce_id"))  # fmt: skip


def reason_of(reason: str) -> str:
    """A reason's first words, as the projector's `dead_letters_total` labels it (the rest names the record)."""
    return reason.split(":", 1)[0].strip()[:60] or "unknown"


def dead_letter_alert(letters: Sequence[DeadLetterSeen], *, topic: str, at: datetime) -> Alert:
    """One alert for the dead letters of one fetch from one partition of the dead-letter topic (a burst is
    one message, not one per record); its id names the first and last offsets."""
    assert letters, "an alert tells at least one dead letter"
    first, last = letters[0], letters[-1]
    reasons = Counter(reason_of(letter.reason) for letter in letters)
    count = len(letters)
    listed = [
        {"partition": d.partition, "offset": d.offset, "reason": d.reason, "source_topic": d.source_topic,
         "source_partition": d.source_partition, "source_offset": d.source_offset, "event_id": d.event_id}
        for d in letters[:MAX_LETTERS_LISTED]
    ]  # fmt: skip
    return Alert(
        id=uuid5(ALERTS, f"dead-letters/{topic}/{first.partition}/{first.offset}-{last.offset}"),
        type=AlertType.DEAD_LETTERS,
        title=f"{count} dead letter{'s' if count > 1 else ''} from the projector",
        at=at,
        facts=(
            ("Topic", f"`{topic}` partition {first.partition}, offsets {first.offset}–{last.offset}"),
            ("Reasons", ", ".join(f"{reason} ×{n}" for reason, n in reasons.most_common(5))),
            ("First", first.reason),
        ),
        data={"topic": topic, "count": count, "reasons": dict(reasons), "letters": listed},
    )


# --- the projector's lag ------------------------------------------------------


class PartitionLag(NamedTuple):
    records: int  # on the topic, not yet applied by the projector
    seconds: float  # how long the oldest of them has been waiting (0 when none)


class LagClock:
    """How far behind the projector runs, in records and seconds, from samples of the topic's end offsets
    and the projector's applied positions.

    The notifier does not read the records' timestamps: it remembers when it saw each end offset, so
    the oldest record not applied arrived no earlier than the first sample whose end passed it. The
    seconds are thus a lower bound, within one sampling interval; a projector already behind when the
    notifier starts counts from then.
    """

    def __init__(self) -> None:
        self._seen: dict[int, deque[tuple[float, int]]] = {}  # partition -> (when, end offset), ends rising

    def measure(self, ends: Mapping[int, int], applied: Mapping[int, int], now: float) -> dict[int, PartitionLag]:
        """`ends`: each partition's end offset; `applied`: the projector's next offset (absent: 0)."""
        lags = {}
        for partition, end in ends.items():
            samples = self._seen.setdefault(partition, deque())
            if not samples or end > samples[-1][1]:
                samples.append((now, end))
            position = applied.get(partition, 0)
            behind = max(0, end - position)
            if behind == 0:
                while len(samples) > 1:
                    samples.popleft()
                lags[partition] = PartitionLag(0, 0.0)
                continue
            while len(samples) > 1 and samples[0][1] <= position:
                samples.popleft()
            lags[partition] = PartitionLag(behind, max(0.0, now - samples[0][0]))
        return lags


class LagAlarm:
    """One "lag high" when a partition's lag passes the threshold, then one "recovered" once every
    partition is back under half of it (so a lag hovering at the threshold does not flap); nothing
    in between, however often it is asked."""

    def __init__(self, *, threshold_seconds: float, topic: str, group: str) -> None:
        self._threshold = threshold_seconds
        self._topic = topic
        self._group = group
        self._open: Alert | None = None

    @property
    def open(self) -> Alert | None:
        """The "lag high" alert told and not yet recovered."""
        return self._open

    def judge(self, lags: Mapping[int, PartitionLag], at: datetime) -> Alert | None:
        if not lags:
            return None
        worst = max(lags.items(), key=lambda item: item[1].seconds)
        partition, lag = worst
        per_partition = {str(p): {"records": v.records, "seconds": round(v.seconds, 3)}
                         for p, v in sorted(lags.items())}  # fmt: skip
        data = {"topic": self._topic, "consumer_group": self._group, "threshold_seconds": self._threshold,
                "partitions": per_partition}  # fmt: skip
        if self._open is None and lag.seconds > self._threshold:
            self._open = Alert(
                id=uuid5(ALERTS, f"projector-lag/{self._group}/{self._topic}/{at.isoformat()}"),
                type=AlertType.PROJECTOR_LAG_HIGH,
                title=f"Projector lagging: {lag.seconds:.0f} s behind on partition {partition}",
                at=at,
                facts=self._facts(lags, f"over {self._threshold:g} s"),
                data={**data, "since": at.isoformat()},
            )
            return self._open
        if self._open is not None and lag.seconds <= self._threshold / 2:
            high, self._open = self._open, None
            return Alert(
                id=uuid5(high.id, "recovered"),
                type=AlertType.PROJECTOR_LAG_RECOVERED,
                title="Projector lag recovered",
                at=at,
                facts=self._facts(lags, f"under {self._threshold / 2:g} s"),
                data={**data, "since": high.at.isoformat(), "high_alert_id": str(high.id)},
            )
        return None

    def _facts(self, lags: Mapping[int, PartitionLag], bound: str) -> tuple[tuple[str, str], ...]:
        behind = sum(v.records for v in lags.values())
        worst = max(v.seconds for v in lags.values())
        return (
            ("Lag", f"{worst:.1f} s ({bound}), {behind} record{'s' if behind != 1 else ''} not applied"),
            ("Topic", f"`{self._topic}`, group `{self._group}`"),
        )
