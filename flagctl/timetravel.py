"""`flagctl audit at` and `flagctl audit diff`: the past, as the command service's time travel answers it."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from events import Platform

if TYPE_CHECKING:
    from flagctl.client import Client

MISMATCH = 3  # as `flagctl audit verify` exits when the log fails verification


def register(audit: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `at` and `diff` to the `audit` subcommands, and `--projection` to `audit verify`."""
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
    verify = audit.choices.get("verify")
    if verify is not None:
        verify.add_argument(
            "--projection", action="store_true",
            help="instead: replay the log into a scratch schema and compare it with the live read models",
        )  # fmt: skip
        log_check = verify.get_default("handler")
        verify.set_defaults(handler=lambda c, a: cmd_verify_projection(a) if a.projection else log_check(c, a))


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


def cmd_verify_projection(args: argparse.Namespace) -> int:
    """Runs here, not through the services: it needs the owner and projector roles (FLAGS_* settings).

    The one command that loads service code: the projector's replay, into a scratch schema.
    """
    import asyncio

    from services.infra.settings import Settings
    from services.projector.projection_check import verify_projection

    report = asyncio.run(verify_projection(Settings(), bar=not getattr(args, "quiet", False)))
    if getattr(args, "json", False):
        print(json.dumps(asdict(report), indent=2))
    else:
        for d in report.differences:
            print(f"DIFFERS {d.table} org {d.org_id or '(system rows)'}: live {d.live}, replayed {d.replayed}")
            for row in d.only_live:
                print(f"  only in the live read models: {row}")
            for row in d.only_replayed:
                print(f"  only in the replay of the log: {row}")
        verdict = "match the log" if report.ok else f"DIFFER from the log in {len(report.differences)} places"
        print(
            f"read models {verdict}: {report.checksums} checksums over {len(report.tables)} tables "
            f"({', '.join(report.tables)}) and {report.orgs} orgs"
        )
    return 0 if report.ok else MISMATCH


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
