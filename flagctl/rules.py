"""`flagctl rules set|show|clear`: a flag's targeting rules at the system level or for one org.

`set` sends a JSON file's list (or `{"rules": [...]}`, as `show --json` prints it) as the level's full new list;
the command API checks it and names the field it refuses (`rules.2.conditions.0.values`). Only the standard
library: the parser is built before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flagctl.errors import UsageError
from flagctl.report import report_change

if TYPE_CHECKING:
    from flagctl.client import Client

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]

__all__ = ["describe_rule", "read_rules", "register"]


def register(sub: SubParsers) -> None:
    """Add `rules` and its actions to `sub`."""
    actions = sub.add_parser("rules", help="targeting rules at the system level or for one org").add_subparsers(
        required=True, metavar="ACTION"
    )
    p = actions.add_parser("set", help="replace the level's rules with a JSON file's list (tried in order)")
    _level(p)
    p.add_argument(
        "--file",
        required=True,
        metavar="RULES.json",
        help='a JSON list of rules, or {"rules": [...]}; - reads standard input',
    )
    _change(p)
    p.set_defaults(handler=cmd_rules_set)

    p = actions.add_parser("show", help="the level's rules in force, and the version to --expect-version")
    _level(p)
    p.add_argument("--json", action="store_true", help='print {"stream", "version", "rules"}')
    p.set_defaults(handler=cmd_rules_show)

    p = actions.add_parser("clear", help="remove every rule at the level")
    _level(p)
    _change(p)
    p.set_defaults(handler=cmd_rules_clear)


def _level(p: argparse.ArgumentParser) -> None:
    p.add_argument("flag")
    p.add_argument("--org", help="organisation; omit for the system level's rules")


def _change(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", required=True, help="why; recorded in the audit trail")
    p.add_argument("--expect-version", type=int, metavar="V", help="fail with 409 unless the rules are at version V")
    p.add_argument("--json", action="store_true")


def _path(args: argparse.Namespace) -> str:
    flag = quote(args.flag, safe="")
    if args.org is None:
        return f"/v1/flags/{flag}/rules"
    return f"/v1/orgs/{quote(args.org, safe='')}/flags/{flag}/rules"


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": args.reason}
    if args.expect_version is not None:
        body["expected_version"] = args.expect_version
    return body


def read_rules(path: str) -> list[Any]:
    """The list in `path` (`-`: standard input): a JSON array, or an object holding it under `rules`."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--file {path}: {exc.strerror or exc}") from None
    try:
        given = json.loads(text, parse_constant=_not_json)
    except ValueError as exc:
        raise UsageError(f"--file {path}: not JSON: {exc}") from None
    if isinstance(given, dict) and "rules" in given:
        given = given["rules"]
    if not isinstance(given, list):
        raise UsageError(f'--file {path}: a JSON list of rules, or {{"rules": [...]}}')
    return given


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def cmd_rules_set(client: Client, args: argparse.Namespace) -> int:
    body = _body(args) | {"rules": read_rules(args.file)}
    return report_change(client.command("PUT", _path(args), body), args)


def cmd_rules_clear(client: Client, args: argparse.Namespace) -> int:
    return report_change(client.command("DELETE", _path(args), _body(args)), args)


def cmd_rules_show(client: Client, args: argparse.Namespace) -> int:
    result = client.command("GET", _path(args))
    if args.json:
        print(json.dumps(result))
        return 0
    where = "the system level" if args.org is None else f"org {args.org}"
    rules = result.get("rules") or []
    print(
        f"{args.flag} at {where}: {len(rules) or 'no'} rule{'' if len(rules) == 1 else 's'}"
        f" ({result['stream']} v{result['version']})"
    )
    for i, rule in enumerate(rules, 1):
        print(f"{i:>3}. {describe_rule(rule)}")
    return 0


def describe_rule(rule: dict[str, Any]) -> str:
    """`staff: email ends_with "@acme.com" AND plan in ["pro", "max"] -> variant dark`."""
    conditions = " AND ".join(_condition(c) for c in rule.get("conditions") or ())
    if rule.get("split"):
        serves = "split " + ",".join(f"{arm['name']}={arm['weight']}" for arm in rule["split"])
    else:
        serves = f"variant {rule.get('variant')}"
    return f"{rule.get('id')}: {conditions} -> {serves}"


def _condition(condition: dict[str, Any]) -> str:
    values = condition.get("values") or []
    words = [condition.get("attribute", "?"), condition.get("operator", "?")]
    if len(values) == 1 and condition.get("operator") not in ("in", "not_in", "in_cidr"):
        words.append(json.dumps(values[0], ensure_ascii=False))
    elif values:
        words.append(json.dumps(values, ensure_ascii=False))
    if condition.get("case_sensitive") is False:
        words.append("(any case)")
    return " ".join(str(w) for w in words)
