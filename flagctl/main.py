"""flagctl: change flags with a reason, ask why a flag is on, read the log.

Exit status: 0 success, 1 the service refused or could not be reached, 2 bad usage.
The parser is built from the vocabulary alone; the HTTP client, the core and the log
reader are imported by the commands that use them, so `--help` starts like a CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from events import Platform
from flagctl import audit, notify, rules, semantics, timetravel, typed
from flagctl.errors import ApiError, UsageError
from flagctl.report import report_change

if TYPE_CHECKING:
    from flagctl.client import Client



def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from flagctl.client import Client  # after parsing: --help and usage errors need no HTTP client

    client = Client(args.command_url, args.query_url, key=_api_key(args.key), notifier_url=args.notifier_url)
    try:
        return int(args.handler(client, args))
    except ApiError as exc:
        print(f"flagctl: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"flagctl: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()


def _service_url(service: str, port: int) -> str:
    """FLAGS_<SERVICE>_URL, else the local service on the port it was started with (as scripts/services does)."""
    local = f"http://127.0.0.1:{os.environ.get(f'FLAGS_{service}_PORT') or port}"
    return os.environ.get(f"FLAGS_{service}_URL") or local


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flagctl", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--command-url", default=_service_url("COMMAND", 8081),
        help="command service (env FLAGS_COMMAND_URL, else 127.0.0.1 on FLAGS_COMMAND_PORT, 8081)",
    )
    parser.add_argument(
        "--query-url", default=_service_url("QUERY", 8082),
        help="query service (env FLAGS_QUERY_URL, else 127.0.0.1 on FLAGS_QUERY_PORT, 8082)",
    )
    parser.add_argument(
        "--notifier-url", default=os.environ.get("FLAGS_NOTIFIER_URL", "http://127.0.0.1:8085"),
        help="notifier: delivery logs, dead letters (env FLAGS_NOTIFIER_URL)",
    )
    parser.add_argument(
        "--key", help="API key (default: env FLAGS_API_KEY, else the bootstrap admin key file of this host)"
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("set", help="set a value and/or rollout at a level (system when no --org)")
    _scope_args(p)
    value = p.add_mutually_exclusive_group()
    value.add_argument("--on", dest="enabled", action="store_const", const=True)
    value.add_argument("--off", dest="enabled", action="store_const", const=False)
    value.add_argument("--clear", action="store_true", help="remove the override at this level")
    rollout = p.add_mutually_exclusive_group()
    rollout.add_argument("--rollout", type=_percentage, metavar="PCT", help="sticky rollout, 0-100")
    rollout.add_argument("--no-rollout", action="store_true", help="remove the rollout at this level")
    serve = p.add_mutually_exclusive_group()
    serve.add_argument("--variant", metavar="NAME", help="the variant this level serves when on")
    serve.add_argument("--split", type=typed.split, metavar="NAME=W,...",
                       help="a sticky weighted split served when on, weights in thousandths: blue=300,dark=700")
    serve.add_argument("--no-variant", action="store_true", help="serve the flag's default variant again")
    _change_args(p)
    p.set_defaults(handler=cmd_set)

    p = sub.add_parser("define", help="define a new flag")
    p.add_argument("flag")
    p.add_argument("--group", required=True)
    p.add_argument("--kind", choices=["release", "experiment", "ops", "permission"], default="release")
    p.add_argument("--description", default="")
    p.add_argument("--owner")
    p.add_argument("--type", choices=typed.TYPES, help="what its variants hold (default boolean: on/off)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=WEIGHT|NAME=JSON",
                   help="repeat; an experiment arm (weights sum to 100 or 1000), or with --type a variant "
                        "and its value as JSON: blue='\"#00f\"', size=3, layout='{\"rows\": 2}'")
    p.add_argument("--variants-file", metavar="FILE.json", help="a typed flag's variants: a JSON object name → value")
    p.add_argument("--default-variant", metavar="NAME", help="what a level that turns the flag on serves")
    p.add_argument("--off-variant", metavar="NAME", help="what the flag serves when off")
    p.add_argument("--expires", metavar="RFC3339", help="when the flag is due for removal")
    _change_args(p, versioned=False)
    p.set_defaults(handler=cmd_define)

    p = sub.add_parser("archive", help="retire a flag: off everywhere")
    p.add_argument("flag")
    _change_args(p)
    p.set_defaults(handler=cmd_archive)

    p = sub.add_parser("eval", help="evaluate one flag (or --all) for an org, platform, user")
    p.add_argument("flag", nargs="?")
    p.add_argument("--org", required=True)
    p.add_argument("--platform", choices=[x.value for x in Platform])
    p.add_argument("--user")
    p.add_argument("--all", action="store_true", help="every flag")
    p.add_argument("--json", action="store_true", help="one JSON object per flag")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("platforms", help="the org's enabled ad platforms")
    p.add_argument("--org", required=True)
    p.add_argument("--user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_platforms)

    p = sub.add_parser("flags", help="list flag definitions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_flags)
    semantics.register(sub, p)

    rules.register(sub)
    timetravel.register(audit.add_parser(sub))
    notify.register(sub)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(required=True, metavar="ACTION")
    p = keys.add_parser("create", help="create a key and print it (shown once)")
    p.add_argument("--role", required=True, choices=["system-admin", "org-admin", "auditor", "evaluator"])
    p.add_argument("--org", help="the org it acts for (omit for a system-wide key)")
    p.add_argument("--name", required=True)
    p.add_argument("--expires", metavar="RFC3339", help="when it stops working, e.g. 2027-01-01T00:00:00Z")
    p.add_argument("--reason", default="created with flagctl")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print {id, key, ...} as JSON")
    output.add_argument("--quiet", action="store_true", help="print the key alone, for KEY=$(flagctl keys create ...)")
    p.set_defaults(handler=cmd_keys_create)
    p = keys.add_parser("list", help="list keys (never the keys themselves)")
    p.add_argument("--org")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_keys_list)
    p = keys.add_parser("revoke", help="revoke a key by id; effective within a second")
    p.add_argument("key_id")
    p.add_argument("--reason", default="revoked with flagctl")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_keys_revoke)

    catalog = sub.add_parser("catalog", help="the seed catalogue").add_subparsers(required=True, metavar="ACTION")
    p = catalog.add_parser("load", help="define the 34 seed flags and their system defaults (idempotent)")
    p.add_argument("--reason", default="seed catalogue")
    p.set_defaults(handler=cmd_catalog_load)
    return parser


def _api_key(given: str | None) -> str | None:
    """--key, then FLAGS_API_KEY, then the key file `scripts/up` wrote for this host's user."""
    if given:
        return given
    if os.environ.get("FLAGS_API_KEY"):
        return os.environ["FLAGS_API_KEY"]
    path = Path(os.environ.get("FLAGS_ADMIN_KEY_FILE") or Path.home() / ".config" / "flagstream" / "admin.key")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _percentage(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is outside 0-100")
    return value


def _scope_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("flag")
    p.add_argument("--org", help="organisation; omit for the system default")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--platform", choices=[x.value for x in Platform])
    where.add_argument("--user")


def _change_args(p: argparse.ArgumentParser, *, versioned: bool = True) -> None:
    p.add_argument("--reason", required=True, help="why; recorded in the audit trail")
    if versioned:
        p.add_argument("--expect-version", type=int, metavar="V", help="fail with 409 unless the stream is at V")
    p.add_argument("--json", action="store_true")


def _scope_path(args: argparse.Namespace) -> str:
    flag = quote(args.flag, safe="")
    if args.org is None:
        if args.platform or args.user:
            raise UsageError("--platform and --user need --org")
        return f"/v1/flags/{flag}/system"
    org = quote(args.org, safe="")
    if args.platform:
        return f"/v1/orgs/{org}/platforms/{args.platform}/flags/{flag}"
    if args.user:
        return f"/v1/orgs/{org}/users/{quote(args.user, safe='')}/flags/{flag}"
    return f"/v1/orgs/{org}/flags/{flag}"


def _base_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": args.reason}
    if getattr(args, "expect_version", None) is not None:
        body["expected_version"] = args.expect_version
    return body


def cmd_set(client: Client, args: argparse.Namespace) -> int:
    body = _base_body(args)
    if args.clear:
        body["enabled"] = None
    elif args.enabled is not None:
        body["enabled"] = args.enabled
    if args.rollout is not None:
        body["rollout_percentage"] = args.rollout
    elif args.no_rollout:
        body["rollout_percentage"] = None
    body |= typed.selection_fields(args)
    if len(body) == len(_base_body(args)):
        raise UsageError("set: say what to change: --on, --off, --clear, --rollout, --no-rollout, --variant, "
                         "--split or --no-variant")
    return report_change(client.command("PUT", _scope_path(args), body), args)


def cmd_define(client: Client, args: argparse.Namespace) -> int:
    body = _base_body(args) | {
        "key": args.flag, "group": args.group, "kind": args.kind,
        "description": args.description, "owner": args.owner, "expires_at": args.expires,
    } | typed.definition_fields(args)
    return report_change(client.command("POST", "/v1/flags", body), args)


def cmd_archive(client: Client, args: argparse.Namespace) -> int:
    path = f"/v1/flags/{quote(args.flag, safe='')}/archive"
    return report_change(client.command("POST", path, _base_body(args)), args)


def cmd_eval(client: Client, args: argparse.Namespace) -> int:
    params = {"platform": args.platform, "user": args.user}
    org = quote(args.org, safe="")
    if args.all:
        answers = client.query(f"/v1/orgs/{org}/flags", params)["flags"]
    elif args.flag:
        answers = [client.query(f"/v1/orgs/{org}/flags/{quote(args.flag, safe='')}", params)]
    else:
        raise UsageError("eval: name a flag or pass --all")
    for answer in answers:
        if args.json:
            print(json.dumps(answer))
            continue
        event = answer.get("event") or {}
        ref = f"  [event {event['id']} v{event['version']}]" if event else ""
        print(f"{_shown(answer['value'])}  {answer['flag_key']:<40} {answer['explanation']}{ref}")
    return 0


def _shown(value: Any) -> str:
    """A value as `eval` prints it: a boolean flag's ON/off, a typed flag's value as JSON."""
    if type(value) is bool:
        return "ON " if value else "off"
    return json.dumps(value, ensure_ascii=False)


def cmd_platforms(client: Client, args: argparse.Namespace) -> int:
    result = client.query(f"/v1/orgs/{quote(args.org, safe='')}/platforms", {"user": args.user})
    print(json.dumps(result) if args.json else " ".join(result["enabled"]) or "(none)")
    return 0


def cmd_flags(client: Client, args: argparse.Namespace) -> int:
    result = client.query("/v1/flags")
    for flag in result["flags"]:
        if args.json:
            print(json.dumps(flag))
        else:
            state = "archived" if flag.get("archived") else f"default {typed.describe_setting(flag.get('system'))}"
            value_type = flag.get("value_type", "boolean")
            print(f"{flag['key']:<40} {flag['group']:<10} {flag['kind']:<11} {value_type:<8} {state}")
    return 0


def cmd_keys_create(client: Client, args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "org_id": args.org, "reason": args.reason}
    if args.expires:
        body["expires_at"] = args.expires
    created = client.command("POST", "/v1/keys", body)
    if args.json:
        print(json.dumps(created))
    elif args.quiet:
        print(created["key"])
    else:
        print(f"created key {created['id']} ({created['role']}, org {created['org_id'] or 'all'}): store it now,")
        print("it is not shown again:")
        print(created["key"])
    return 0


def cmd_keys_list(client: Client, args: argparse.Namespace) -> int:
    query = f"?org={quote(args.org, safe='')}" if args.org else ""
    for key in client.command("GET", "/v1/keys" + query)["keys"]:
        if args.json:
            print(json.dumps(key))
            continue
        state = "revoked" if key["revoked_at"] else (f"expires {key['expires_at']}" if key["expires_at"] else "active")
        print(f"{key['id']}  {key['role']:<12} {key['org_id'] or '(all orgs)':<20} {state:<30} {key['name']}")
    return 0


def cmd_keys_revoke(client: Client, args: argparse.Namespace) -> int:
    result = client.command("POST", f"/v1/keys/{quote(args.key_id, safe='')}/revoke", {"reason": args.reason})
    print(json.dumps(result) if args.json else f"key {result['id']} revoked at {result['revoked_at']}")
    return 0


def cmd_catalog_load(client: Client, args: argparse.Namespace) -> int:
    from flagcore import SEED_FLAGS

    defined = skipped = 0
    total = len(SEED_FLAGS)
    interactive = sys.stderr.isatty()
    for i, seed in enumerate(SEED_FLAGS, 1):
        body = {
            "key": seed.key, "group": seed.group, "kind": seed.kind.value, "description": seed.description,
            "owner": seed.owner, "reason": args.reason,
            "variants": [{"name": name, "weight": weight} for name, weight in seed.variants],
        }
        try:
            client.command("POST", "/v1/flags", body)
        except ApiError as exc:
            if exc.body.get("error") != "invalid_transition":
                raise
            skipped += 1  # already defined: leave its current default alone
        else:
            system = {"enabled": seed.default_on, "reason": args.reason}
            client.command("PUT", f"/v1/flags/{seed.key}/system", system)
            defined += 1
        if interactive:
            print(f"\r[{i}/{total}] {seed.key:<45}", end="", file=sys.stderr, flush=True)
        else:  # a log or CI console: a line per flag, not one line of carriage returns
            print(f"[{i}/{total}] {seed.key}", file=sys.stderr, flush=True)
    if interactive:
        print(file=sys.stderr)
    print(f"catalogue: {defined} flags defined with their system defaults, {skipped} already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
