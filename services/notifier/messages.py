"""What a destination receives: Slack Block Kit messages and the CloudEvents webhook body. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from events.cloudevents import CONTENT_TYPE, attributes
from services.notifier.alerts import Alert
from services.notifier.notices import Notice, describe

__all__ = [
    "MAX_SLACK_CHANGES",
    "alert_slack_message",
    "alert_webhook_body",
    "audit_link",
    "bulks",
    "slack_message",
    "webhook_body",
]

MAX_SLACK_CHANGES = 20  # per message: Slack takes at most 50 blocks; the rest is counted, with a link
SLACK_FIELD_CHARS = 1900  # Slack refuses a text object over 2000 characters


def bulks(notices: Iterable[Notice]) -> list[list[Notice]]:
    """Consecutive notices of one bulk change (same actor, reason and instant) together, in order."""
    grouped: list[list[Notice]] = []
    for notice in notices:
        if grouped and grouped[-1][-1].bulk_key == notice.bulk_key:
            grouped[-1].append(notice)
        else:
            grouped.append([notice])
    return grouped


def audit_link(console_url: str, notice: Notice) -> str:
    """The change's row in the console's audit page (`/audit`, rows are `#event-<id>`)."""
    e = notice.envelope
    query = {"org": e.org_id, "flag": e.flag_key}
    params = urlencode({k: v for k, v in query.items() if v})
    return f"{console_url.rstrip('/')}/audit?{params}#event-{e.event_id}"


def _escape(text: str) -> str:
    """Slack mrkdwn's three control characters; user text must not make links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:SLACK_FIELD_CHARS]


def _change_text(notice: Notice) -> str:
    e = notice.envelope
    return f"{e.type}: {describe(e.previous)} → {describe(e.new)}"


def _time(notice: Notice) -> str:
    return notice.envelope.occurred_at.isoformat().replace("+00:00", "Z")


def _change_section(notice: Notice, console_url: str) -> dict[str, Any]:
    e = notice.envelope
    fields = [
        ("Flag", f"`{notice.flag_key}`"),
        ("Scope", _escape(notice.scope_text)),
        ("Change", _escape(_change_text(notice))),
        ("Version", f"{e.stream} v{e.version}"),
    ]
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{text}"} for name, text in fields],
        "accessory": {
            "type": "button",
            "text": {"type": "plain_text", "text": "Audit entry"},
            "url": audit_link(console_url, notice),
        },
    }


def slack_message(notices: Sequence[Notice], console_url: str) -> dict[str, Any]:
    """One Block Kit message for one change, or for the changes of one bulk change."""
    assert notices, "a message tells at least one change"
    first = notices[0]
    e = first.envelope
    title = notice_title(first) if len(notices) == 1 else f"{len(notices)} flag changes"
    who = (
        f"*Actor* {_escape(e.actor.name)} (`{_escape(e.actor.id)}`) · *Time* {_time(first)}\n"
        f"*Reason* {_escape(e.reason)}"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": who}},
    ]
    shown = notices[:MAX_SLACK_CHANGES]
    for notice in shown:
        blocks.append(_change_section(notice, console_url))
    if len(notices) > len(shown):
        more = len(notices) - len(shown)
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"…and {more} more change{'s' if more > 1 else ''} in the audit trail"}
        ]})
    fallback = f"{title} by {e.actor.name}: {e.reason}"
    return {"text": _escape(fallback), "blocks": blocks}


def notice_title(notice: Notice) -> str:
    e = notice.envelope
    if e.type == "KillSwitchEngaged":
        return f"Kill switch engaged: {notice.flag_key}"
    if e.type == "KillSwitchReleased":
        return f"Kill switch released: {notice.flag_key}"
    return f"Flag change: {notice.flag_key}"


def webhook_body(notice: Notice) -> dict[str, Any]:
    """A CloudEvents 1.0 event in JSON (structured mode): its attributes, and the full envelope as `data`."""
    return {
        **attributes(notice.envelope),
        "datacontenttype": CONTENT_TYPE,
        "data": notice.envelope.model_dump(mode="json"),
    }


# --- operational alerts -------------------------------------------------------

ALERT_MARK = {True: ":large_green_circle:", False: ":rotating_light:"}


def alert_slack_message(alert: Alert) -> dict[str, Any]:
    """One Block Kit message per alert: a marked header (a siren, or a green circle for released or
    recovered), its facts, and when and which alert it is; a button to the audit entry when there is one."""
    title = f"{ALERT_MARK[alert.resolves]} {alert.title}"
    facts: dict[str, Any] = {"type": "section", "fields": [
        {"type": "mrkdwn", "text": f"*{name}*\n{_escape(text)}"} for name, text in alert.facts[:10]
    ]}  # fmt: skip
    if alert.link is not None:
        button = {"type": "plain_text", "text": "Audit entry"}
        facts["accessory"] = {"type": "button", "text": button, "url": alert.link}
    when = alert.at.isoformat().replace("+00:00", "Z")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        facts,
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"Operational alert `{alert.kind.value}` · {when} · id `{alert.id}`"}
        ]},
    ]  # fmt: skip
    return {"text": _escape(alert.title), "blocks": blocks}


def alert_webhook_body(alert: Alert) -> dict[str, Any]:
    """A CloudEvents 1.0 event in JSON, as a change's: `id` the alert's (= `webhook-id`), `type` the alert's."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(alert.id),
        "source": "flagstream/notifier",
        "type": alert.type.value,
        "time": alert.at.isoformat(),
        "datacontenttype": "application/json",
        "data": {"kind": alert.kind.value, "title": alert.title, "org_id": alert.org_id, **alert.data},
    }
    if alert.flag_key is not None:
        body["subject"] = alert.flag_key
    return body
