"""`flagctl audit at` and `flagctl audit diff`: the past, as the command service's time travel answers it."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlencode

from events import Platform
from flagctl.client import Client


def register(audit: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `at` and `diff` to the `audit` subcommands."""
    p = audit.add_parser("at", help="an org's flags (or one) as they evaluated at an instant, and what decided each")
    p.add_argument("instant", help="RFC 3339 with an offset, e.g. 2026-11-01T12:00:00Z")
    _whose(p)
    p.add_argument("--flag")
    p.set_defaults(handler=cmd_at)
    p = audit.add_parser("diff", help="what changed for an org between two instants")
    p.add_argument("since", metavar="FROM", help="the earlier instant (RFC 3339)")
    p.add_argument("until", metavar="TO", help="the later instant (RFC 3339)")
    _whose(p)
    p.set_defaults(handler=cmd_diff)


def _whose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--org", help="default: the key's own org")
    p.add_argument("--platform", choices=[x.value for x in Platform])
    p.add_argument("--user")
    p.add_argument("--json", action="store_true", help="the service's answer as JSON")


def cmd_at(client: Client, args: argparse.Namespace) -> int:
    params = {"at": args.instant, "org": args.org, "flag": args.flag, "platform": args.platform, "user": args.user}
    answer = _get(client, "/v1/audit/at", params)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"{answer['org_id']} at {answer['at']}:")
    for view in answer["flags"]:
        print(f"  {describe(view)}")
    return 0


def cmd_diff(client: Client, args: argparse.Namespace) -> int:
    params = {"from": args.since, "to": args.until, "org": args.org, "platform": args.platform, "user": args.user}
    answer = _get(client, "/v1/audit/diff", params)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"{answer['org_id']}: {len(answer['changes'])} flags changed between {answer['from']} and {answer['to']}")
    for change in answer["changes"]:
        before, after = change["before"], change["after"]
        print(f"  {change['flag_key']}")
        print(f"    before: {describe(before) if before else 'not defined'}")
        print(f"    after:  {describe(after) if after else 'not defined'}")
    return 0


def _get(client: Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    return client.command("GET", f"{path}?{urlencode({k: v for k, v in params.items() if v is not None})}")


def describe(view: dict[str, Any]) -> str:
    """One line: the answer, the level and the event that decided it."""
    decided = view.get("decided_by")
    by = (
        f" [event {decided['event_id']} {decided['stream']} v{decided['version']} by {decided['actor']}]"
        if decided
        else ""
    )
    return f"{view['explanation']}{by}"
