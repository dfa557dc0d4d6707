"""`flagctl audit`: the history of changes, proof that the log is intact, and rollback.

    flagctl audit [filters] [--format table|json|jsonl|csv]   history, every page
    flagctl audit verify [--topic T]                           walk the Kafka topic, check every hash chain
    flagctl audit rollback ... (--at T | --version V)          restore values by appending changes

`verify` exits 3 when the log fails verification (altered, removed, duplicated,
reordered or forged events, or records missing from a partition's start). With
`--against-store` it also compares the topic with the command store's events
(read through `GET /v1/history`), which catches what no chain can: the last
event of a stream removed, or altered and re-sealed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from events import Platform
from flagctl.errors import ApiError

if TYPE_CHECKING:
    from flagctl.client import Client
    from flagctl.logreader import TopicExtent
    from flaglog.verification import Report

__all__ = ["TAMPERED", "add_parser"]

TAMPERED = 3
LEVELS = ("definition", "system", "org", "platform", "user", "key")


def add_parser(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """Add `audit` to flagctl's commands; returns its own sub-commands, for others to add to."""
    p = sub.add_parser("audit", help="history of changes; `verify` the log; `rollback`")
    p.add_argument("--org")
    p.add_argument("--catalog", action="store_true", help="with --org: also definitions and system defaults")
    p.add_argument("--flag")
    p.add_argument("--actor", help="actor id (key:…) or name")
    p.add_argument("--level", action="append", choices=LEVELS, help="repeat for several")
    p.add_argument("--type", action="append", help="event type, e.g. OrgOverrideSet; repeat for several")
    p.add_argument("--since", metavar="RFC3339", help="events at or after this instant")
    p.add_argument("--until", metavar="RFC3339", help="events before this instant")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--format", choices=["table", "json", "jsonl", "csv"], default="table")
    output.add_argument("--json", dest="format", action="store_const", const="jsonl", help="same as --format jsonl")
    p.set_defaults(handler=cmd_history)
    actions = p.add_subparsers(metavar="ACTION")

    v = actions.add_parser("verify", help="read the whole Kafka topic and check every stream's hash chain")
    v.add_argument("--topic", help="topic to verify (default: FLAGS_TOPIC, flags.changes)")
    v.add_argument(
        "--tolerate-duplicates", action="store_true",
        help="identical re-publications (after a relay crash) are warnings, not failures",
    )
    v.add_argument(
        "--against-store", action="store_true",
        help="also compare with the command store's events (needs an auditor or admin key)",
    )
    v.add_argument("--json", action="store_true", help="the full report as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress line")
    v.set_defaults(handler=cmd_verify)

    r = actions.add_parser("rollback", help="restore a flag's values as of an instant or a version, by new changes")
    r.add_argument("--flag", help="the flag (required without --org, or with --version, --platform, --user)")
    r.add_argument("--org", help="the org whose overrides to restore; omit for the system default")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--platform", choices=[x.value for x in Platform])
    where.add_argument("--user")
    target = r.add_mutually_exclusive_group(required=True)
    target.add_argument("--at", metavar="RFC3339", help="restore the values as of this instant")
    target.add_argument("--version", type=int, metavar="V", help="restore the stream's value right after version V")
    r.add_argument("--definition", action="store_true", help="without --org, with --version: the definition's stream")
    r.add_argument("--reason", required=True, help='recorded as "rollback to <target>: <reason>"')
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_rollback)

    a = actions.add_parser(
        "acknowledge", help="record that a foreign record `verify` reports is known (system admins)",
        description="`verify` then reports that record as a warning naming you and the reason, not a failure.",
    )
    a.add_argument("--partition", type=int, required=True)
    a.add_argument("--offset", type=int, required=True)
    a.add_argument("--sha256", required=True, help="the record's SHA-256, as `verify` prints it")
    a.add_argument("--reason", required=True, help="what the record is and why it may stay")
    a.add_argument("--json", action="store_true")
    a.set_defaults(handler=cmd_acknowledge)
    return actions


def cmd_acknowledge(client: Client, args: argparse.Namespace) -> int:
    body = {"partition": args.partition, "offset": args.offset, "sha256": args.sha256, "reason": args.reason}
    result = client.command("POST", "/v1/audit/foreign-records", body)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"acknowledged partition {args.partition} offset {args.offset} (event {result['event']['event_id']})")
    return 0


# --- history ---------------------------------------------------------------------------


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "org": args.org, "flag": args.flag, "actor": args.actor, "since": args.since, "until": args.until,
        "level": args.level or [], "type": args.type or [],
    }
    if args.catalog:
        params["catalog"] = "true"
    if args.format in ("jsonl", "csv"):  # the service streams the whole export
        client.download("/v1/history", {**params, "format": args.format}, sys.stdout.buffer)
        return 0
    entries = []
    cursor = None
    while True:
        page = client.command("GET", "/v1/history?" + _query({**params, "cursor": cursor, "limit": 1000}))
        if args.format == "table":
            for e in page["entries"]:
                print(_row(e))
        else:
            entries += page["entries"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    if args.format == "json":
        print(json.dumps({"entries": entries}, indent=2))
    return 0


def _query(params: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)


def _row(e: dict[str, Any]) -> str:
    return (
        f"{e['occurred_at']}  {e['actor']['name']:<16} {e['level'] or '?':<10} {e['stream']} v{e['version']}  "
        f"{e['type']}: {_value(e['previous'])} -> {_value(e['new'])}  ({e['reason']})"
    )


def _value(value: dict[str, Any] | None) -> str:
    return "-" if value is None else json.dumps(value, separators=(",", ":"))


# --- verify ------------------------------------------------------------------------------


def cmd_verify(client: Client, args: argparse.Namespace) -> int:
    # Reading the whole topic needs Kafka's client and the verifier: loaded here, not for every command.
    import asyncio

    from flagctl.logreader import LogUnavailable, Progress, read_topic
    from flaglog.connection import KafkaConnection
    from flaglog.verification import LogVerifier

    settings = KafkaConnection()
    topic = args.topic or settings.topic
    verifier = LogVerifier(tolerate_duplicates=args.tolerate_duplicates)
    progress = Progress(None if args.quiet or args.json else sys.stderr)
    # The store is read first, and the relay seen idle after: every event read is then on the topic.
    published = _published(client) if args.against_store else None
    try:
        extent = asyncio.run(read_topic(settings, topic, verifier.add, progress=progress))
    except LogUnavailable as exc:
        print(f"flagctl: {exc}", file=sys.stderr)
        return 1
    if published is not None:
        verifier.check_store(published)
    report = verifier.report()
    clean = report.ok and not extent.truncated
    if args.json:
        found = report.to_dict() | {"ok": clean, "topic": topic, "partitions": len(extent.end)}
        print(json.dumps(found | {"truncated": extent.truncated}))
    else:
        print(_verdict(report, extent))
    return 0 if clean else TAMPERED


class _Events:
    """A binary sink for a JSON Lines export that keeps each event's (stream, version, hash)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, int, str]] = []
        self._rest = b""

    def write(self, chunk: bytes) -> int:
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        for line in lines:
            e = json.loads(line)
            self.found.append((e["stream"], e["version"], e["hash"]))
        return len(chunk)


def _published(client: Client, *, wait: float = 10.0) -> list[tuple[str, int, str]]:
    """The command store's events, once the relay has published every one of them."""
    events = _Events()
    client.download("/v1/history", {"format": "jsonl"}, events)  # type: ignore[arg-type]
    deadline = time.monotonic() + wait
    while (lag := client.command("GET", "/readyz").get("outbox_lag")) != 0:
        if time.monotonic() > deadline:
            raise ApiError(f"the relay still has {lag} events to publish: cannot compare the topic with the store yet")
        time.sleep(0.2)
    return events.found


def _verdict(report: Report, extent: TopicExtent) -> str:
    from flaglog.verification import Severity  # loaded already by the verification that made `report`

    lines = []
    for partition, first in sorted(extent.truncated.items()):
        lines.append(f"partition {partition}: offsets 0..{first - 1} are gone (the log does not start at 0)")
    for finding in report.findings:
        p = finding.first
        label = "warning" if not finding.failures else p.kind.value
        place = "not on the topic" if p.partition is None else f"partition {p.partition} offset {p.offset}"
        lines.append(
            f"{finding.stream}: {label} at v{p.version}, {place}{f' (event {p.event_id})' if p.event_id else ''}: "
            f"{p.detail}"
            + (f"  [{finding.problems} problems in this stream]" if finding.problems > 1 else "")
        )
    for p in report.unattributed:
        label = p.kind.value if p.severity is Severity.FAILURE else f"{p.kind.value} (warning)"
        lines.append(f"partition {p.partition} offset {p.offset}: {label}: {p.detail}")
    where = f"topic {extent.topic}, {len(extent.end)} partitions"
    if report.ok and not extent.truncated:
        lines.append(f"{report.events} events in {report.streams} streams verified ({where})")
    else:
        broken = len(report.broken) + sum(p.severity is Severity.FAILURE for p in report.unattributed)
        lines.append(
            f"TAMPERED: {broken} of {report.streams} streams fail verification "
            f"({report.records} records read, {where})"
        )
    return "\n".join(lines)


# --- rollback ----------------------------------------------------------------------------


def cmd_rollback(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"reason": args.reason}
    body |= {"at": args.at} if args.at is not None else {"version": args.version}
    if args.org is None:
        if args.flag is None or args.platform or args.user:
            print("flagctl: audit rollback: without --org, name the --flag whose system default to restore",
                  file=sys.stderr)
            return 2
        if args.definition:
            body["definition"] = True
        result = client.command("POST", f"/v1/flags/{quote(args.flag, safe='')}/rollback", body)
    else:
        if args.definition:
            print("flagctl: audit rollback: --definition is a flag's, not an org's: omit --org", file=sys.stderr)
            return 2
        body |= {"flag_key": args.flag, "platform": args.platform, "user_id": args.user}
        body = {k: v for k, v in body.items() if v is not None}
        result = client.command("POST", f"/v1/orgs/{quote(args.org, safe='')}/rollback", body)
    if args.json:
        print(json.dumps(result))
        return 0
    for s in result["streams"]:
        state = f"now v{s['version']}" if s["changed"] else f"already so at v{s['version']}"
        print(f"{s['stream']}: restored {_value(s['value'])} (as after v{s['restored_version']}), {state}")
    print(f"{'rolled back' if result['changed'] else 'nothing to change'}: {result['reason']}")
    return 0
