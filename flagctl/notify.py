"""`flagctl notify add|list|pause|resume|remove|log|retry`: notification subscriptions and their deliveries.

Subscriptions are managed through the command API (they are events, audited like flags); a
subscription's delivery log, its dead letters and "retry now" are the notifier's own API
(`--notifier-url`). `--org` names an org's subscription; without it, a system-wide one.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from events import FlagKind, Level
from flagctl.errors import UsageError

if TYPE_CHECKING:
    from flagctl.client import Client

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


def register(sub: SubParsers) -> None:
    notify = sub.add_parser("notify", help="Slack and webhook notifications of changes").add_subparsers(
        required=True, metavar="ACTION"
    )
    p = notify.add_parser("add", help="subscribe a Slack channel or a webhook (a webhook's secret is shown once)")
    p.add_argument("name")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--slack", metavar="URL", help="a Slack incoming-webhook URL")
    where.add_argument("--webhook", metavar="URL", help="an HTTPS endpoint, signed per Standard Webhooks")
    p.add_argument("--secret", help="the webhook's signing secret (whsec_…); default: a new one, printed once")
    p.add_argument("--flags", default="*", metavar="GLOB", help="flag keys to hear about, e.g. 'ai.*' (default *)")
    p.add_argument("--group", action="append", default=[], help="only flags of this group (repeat)")
    p.add_argument("--kind", action="append", default=[], choices=[k.value for k in FlagKind])
    p.add_argument("--level", action="append", default=[], choices=[lv.value for lv in Level])
    p.add_argument("--event-type", action="append", default=[], metavar="TYPE",
                   help="e.g. KillSwitchEngaged; or an alert to opt in to: alert.kill_switch, "
                        "alert.dead_letter, alert.projector_lag")
    _common(p, reason=True)
    p.set_defaults(handler=cmd_add)

    p = notify.add_parser("list", help="the subscriptions of an org (or the system-wide ones), never their secrets")
    _common(p)
    p.set_defaults(handler=cmd_list)

    for action, verb in (("pause", "stop delivering (changes meanwhile are not sent later)"),
                         ("resume", "deliver again"), ("remove", "delete the subscription")):  # fmt: skip
        p = notify.add_parser(action, help=verb)
        p.add_argument("id")
        _common(p, reason=True)
        p.set_defaults(handler=cmd_act, action=action)

    p = notify.add_parser("log", help="a subscription's last attempts (or its dead letters), newest first")
    p.add_argument("id")
    p.add_argument("--dead", action="store_true", help="its dead letters instead")
    p.add_argument("--limit", type=int, default=20)
    _common(p)
    p.set_defaults(handler=cmd_log)

    p = notify.add_parser("retry", help="send a subscription's dead letters again, now")
    p.add_argument("id")
    _common(p)
    p.set_defaults(handler=cmd_retry)


def _common(p: argparse.ArgumentParser, *, reason: bool = False) -> None:
    p.add_argument("--org", help="the org whose subscription it is; omit for a system-wide one")
    if reason:
        p.add_argument("--reason", required=True, help="why; recorded in the audit trail")
    p.add_argument("--json", action="store_true")


def _base(args: argparse.Namespace) -> str:
    return "/v1/subscriptions" if args.org is None else f"/v1/orgs/{quote(args.org, safe='')}/subscriptions"


def _one(args: argparse.Namespace) -> str:
    return f"{_base(args)}/{quote(args.id, safe='')}"


def cmd_add(client: Client, args: argparse.Namespace) -> int:
    if args.slack and args.secret:
        raise UsageError("notify add: --secret is for a --webhook (a Slack URL is its own secret)")
    destination: dict[str, Any] = (
        {"kind": "slack", "url": args.slack} if args.slack else {"kind": "webhook", "url": args.webhook}
    )
    if args.secret:
        destination["secret"] = args.secret
    body = {
        "name": args.name, "destination": destination, "reason": args.reason, "flag_pattern": args.flags,
        "groups": args.group, "kinds": args.kind, "levels": args.level, "event_types": args.event_type,
    }  # fmt: skip
    made = client.command("POST", _base(args), body)
    if args.json:
        print(json.dumps(made))
        return 0
    print(f"subscription {made['id']} ({made['destination']['kind']} {made['destination']['target']}) created")
    if made.get("secret"):
        print("its signing secret, not shown again:")
        print(made["secret"])
    return 0


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    found = client.command("GET", _base(args))["subscriptions"]
    if not found and not args.json:
        print("no subscriptions")
    for s in found:
        if args.json:
            print(json.dumps(s))
            continue
        state = "paused" if s["paused"] else "active"
        filters = " ".join(f"{k}={','.join(s[k])}" for k in ("groups", "kinds", "levels", "event_types") if s[k])
        print(f"{s['id']}  {state:<6} {s['destination']['kind']:<7} {s['name']:<24} {s['flag_pattern']} {filters}"
              .rstrip())  # fmt: skip
    return 0


def cmd_act(client: Client, args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    if args.action == "remove":
        result = client.command("DELETE", _one(args), body)
    else:
        result = client.command("POST", f"{_one(args)}/{args.action}", body)
    if args.json:
        print(json.dumps(result))
        return 0
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[args.action]
    print(f"subscription {result['id']} {done if result['changed'] else 'unchanged'} (version {result['version']})")
    return 0


def cmd_log(client: Client, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 500:
        raise UsageError("notify log: --limit is 1 to 500")
    path, key = ("dead-letters", "dead_letters") if args.dead else ("deliveries", "attempts")
    rows = client.notifier("GET", f"{_one(args)}/{path}?limit={args.limit}")[key]
    if not rows and not args.json:
        print("no dead letters" if args.dead else "no attempts yet")
    for row in rows:
        if args.json:
            print(json.dumps(row))
        elif args.dead:
            state = f"retried {row['retried_at']}" if row["retried_at"] else "not retried"
            print(f"#{row['id']}  {row['created_at']}  {row['attempts']} attempts  {state:<40} {row['reason']}")
        else:
            said = row["http_status"] if row["http_status"] is not None else "-"
            print(f"{row['attempted_at']}  #{row['attempt']:<2} {row['status']:<9} {said!s:<4} "
                  f"{row['latency_ms']:8.1f} ms  {row['error'] or ''}".rstrip())  # fmt: skip
    return 0


def cmd_retry(client: Client, args: argparse.Namespace) -> int:
    result = client.notifier("POST", f"{_one(args)}/dead-letters/retry")
    if args.json:
        print(json.dumps(result))
    elif result["retried"]:
        print(f"retrying {len(result['retried'])} dead letters ({', '.join(f'#{i}' for i in result['retried'])}); "
              "see `flagctl notify log`")  # fmt: skip
    else:
        print("no dead letters to retry")
    return 0
