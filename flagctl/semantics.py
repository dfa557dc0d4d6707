"""`flagctl schedule|unschedule|schedules|kill|unkill|flags stale`: the flag semantics of the command and query APIs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from events import Platform
from flagctl.report import report_change

if TYPE_CHECKING:
    from flagctl.client import Client

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


def register(sub: SubParsers, flags: argparse.ArgumentParser) -> None:
    """Add the scheduling and kill-switch commands to `sub`, and `stale` under the `flags` command."""
    p = sub.add_parser("schedule", help="from an instant on, set a value and/or rollout at a level")
    _scope(p)
    p.add_argument("--at", required=True, metavar="RFC3339", help="when it takes effect, e.g. 2026-12-01T09:00:00Z")
    value = p.add_mutually_exclusive_group()
    value.add_argument("--on", dest="enabled", action="store_const", const=True)
    value.add_argument("--off", dest="enabled", action="store_const", const=False)
    p.add_argument("--rollout", type=int, metavar="PCT", help="rollout from then on, 0-100")
    _change(p)
    p.set_defaults(handler=cmd_schedule)

    p = sub.add_parser("unschedule", help="cancel the step scheduled at an instant")
    _scope(p)
    p.add_argument("--at", required=True, metavar="RFC3339")
    _change(p)
    p.set_defaults(handler=cmd_unschedule)

    p = sub.add_parser("schedules", help="what is scheduled for an org (system defaults included), soonest first")
    p.add_argument("--org", required=True)
    p.add_argument("--flag")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_schedules)

    for name, engage in (("kill", True), ("unkill", False)):
        verb = "engage" if engage else "release"
        p = sub.add_parser(name, help=f"{verb} an ops flag's kill switch (system admins)")
        p.add_argument("flag")
        _change(p)
        p.set_defaults(handler=cmd_kill if engage else cmd_unkill)

    actions = flags.add_subparsers(metavar="ACTION")
    p = actions.add_parser("stale", help="flags due for removal: expired, or fully on/off and unchanged")
    p.add_argument("--days", type=int, default=30, help="unchanged for at least this many days (default 30)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stale)


def _scope(p: argparse.ArgumentParser) -> None:
    p.add_argument("flag")
    p.add_argument("--org", help="organisation; omit for the system default")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--platform", choices=[x.value for x in Platform])
    where.add_argument("--user")


def _change(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", required=True, help="why; recorded in the audit trail")
    p.add_argument("--json", action="store_true")


def _schedule_path(args: argparse.Namespace) -> str:
    flag = quote(args.flag, safe="")
    if args.org is None:
        if args.platform or args.user:
            print("flagctl: --platform and --user need --org", file=sys.stderr)
            raise SystemExit(2)
        return f"/v1/flags/{flag}/system/schedule"
    org = quote(args.org, safe="")
    if args.platform:
        return f"/v1/orgs/{org}/platforms/{args.platform}/flags/{flag}/schedule"
    if args.user:
        return f"/v1/orgs/{org}/users/{quote(args.user, safe='')}/flags/{flag}/schedule"
    return f"/v1/orgs/{org}/flags/{flag}/schedule"


def cmd_schedule(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"reason": args.reason, "effective_at": args.at}
    if args.enabled is not None:
        body["enabled"] = args.enabled
    if args.rollout is not None:
        body["rollout_percentage"] = args.rollout
    return report_change(client.command("PUT", _schedule_path(args), body), args)


def cmd_unschedule(client: Client, args: argparse.Namespace) -> int:
    body = {"reason": args.reason, "effective_at": args.at}
    return report_change(client.command("DELETE", _schedule_path(args), body), args)


def cmd_kill(client: Client, args: argparse.Namespace) -> int:
    path = f"/v1/flags/{quote(args.flag, safe='')}/kill-switch"
    return report_change(client.command("POST", path, {"reason": args.reason}), args)


def cmd_unkill(client: Client, args: argparse.Namespace) -> int:
    path = f"/v1/flags/{quote(args.flag, safe='')}/kill-switch"
    return report_change(client.command("DELETE", path, {"reason": args.reason}), args)


def cmd_schedules(client: Client, args: argparse.Namespace) -> int:
    params = {"flag": args.flag} if args.flag else None
    result = client.query(f"/v1/orgs/{quote(args.org, safe='')}/schedules", params)
    if args.json:
        print(json.dumps(result))
        return 0
    if not result["steps"]:
        print("nothing scheduled")
    for step in result["steps"]:
        where = step["level"] + (f" {step['platform']}" if step["platform"] else "")
        where += f" {step['user_id']}" if step["user_id"] else ""
        sets = []
        if step["enabled"] is not None:
            sets.append("on" if step["enabled"] else "off")
        if step["rollout_percentage"] is not None:
            sets.append(f"rollout {step['rollout_percentage']}%")
        print(f"{step['at']}  {step['flag_key']:<40} {where:<20} {', '.join(sets)}")
    return 0


def cmd_stale(client: Client, args: argparse.Namespace) -> int:
    result = client.command("GET", f"/v1/reports/stale-flags?days={args.days}")
    if args.json:
        print(json.dumps(result))
        return 0
    if not result["flags"]:
        print(f"no stale flags (expired, or fully on/off and unchanged for {args.days} days)")
    for flag in result["flags"]:
        value = {True: "on for all", False: "off for all", None: "split"}[flag["value"]]
        expired = flag["reason"] == "expired"
        why = f"expired {flag['expires_at']}" if expired else f"unchanged since {flag['last_changed_at']}"
        print(f"{flag['key']:<40} {flag['kind']:<11} {flag['owner'] or '(no owner)':<16} {value:<12} {why}")
    return 0
