"""flagctl's `rules set|show|clear`: what they send and print, on a fake HTTP transport, and that the parser
stays light (no HTTP client, pydantic or RE2 imported to build it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flagctl.client import Client
from flagctl.errors import UsageError
from flagctl.main import build_parser

STAFF = {"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]}],
         "variant": "dark"}  # fmt: skip
CHANGED = {"changed": True, "stream": "s", "version": 1, "events": [
    {"type": "TargetingRulesSet", "stream": "org/acme/flag/t/rules", "version": 1, "previous": None, "new": {}}
]}  # fmt: skip


def run(*argv: str, answer: dict[str, Any] | None = None) -> tuple[list[httpx.Request], Any]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200 if request.method == "GET" else 201, json=answer or CHANGED)

    args = build_parser().parse_args(list(argv))
    client = Client("http://command", "http://query", key="k", transport=httpx.MockTransport(handler))
    try:
        assert args.handler(client, args) == 0
    finally:
        client.close()
    return seen, args


@pytest.mark.parametrize("shape", ["list", "object"])
def test_set_sends_the_files_list_to_the_orgs_rules(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([STAFF] if shape == "list" else {"stream": "x", "version": 3, "rules": [STAFF]}))
    seen, _ = run("rules", "set", "checkout.theme", "--org", "acme", "--file", str(path), "--reason", "staff",
                  "--expect-version", "3")  # fmt: skip
    [request] = seen
    assert (request.method, request.url.path) == ("PUT", "/v1/orgs/acme/flags/checkout.theme/rules")
    assert json.loads(request.content) == {"reason": "staff", "expected_version": 3, "rules": [STAFF]}


def test_without_org_the_system_levels_rules_are_set_and_cleared(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([STAFF]))
    seen, _ = run("rules", "set", "Feature.A", "--file", str(path), "--reason", "r")
    assert (seen[0].method, seen[0].url.path) == ("PUT", "/v1/flags/Feature.A/rules")
    seen, _ = run("rules", "clear", "Feature.A", "--reason", "done")
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/v1/flags/Feature.A/rules")
    assert json.loads(seen[0].content) == {"reason": "done"}


def test_show_prints_each_rule_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    split = {"id": "beta", "conditions": [{"attribute": "plan", "operator": "in", "values": ["pro", "max"],
                                           "case_sensitive": False},
                                          {"attribute": "app_version", "operator": "semver_gte", "values": ["2.1.0"]}],
             "split": [{"name": "blue", "weight": 500}, {"name": "dark", "weight": 500}]}  # fmt: skip
    answer = {"stream": "org/acme/flag/t/rules", "version": 4, "rules": [STAFF, split]}
    seen, _ = run("rules", "show", "t", "--org", "acme", answer=answer)
    assert (seen[0].method, seen[0].url.path) == ("GET", "/v1/orgs/acme/flags/t/rules")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "t at org acme: 2 rules (org/acme/flag/t/rules v4)",
        '  1. staff: email ends_with "@acme.com" -> variant dark',
        '  2. beta: plan in ["pro", "max"] (any case) AND app_version semver_gte "2.1.0" -> split blue=500,dark=500',
    ]
    run("rules", "show", "t", "--json", answer=answer)
    assert json.loads(capsys.readouterr().out) == answer


def test_show_says_when_there_are_none(capsys: pytest.CaptureFixture[str]) -> None:
    run("rules", "show", "t", answer={"stream": "flag/t/system/rules", "version": 0, "rules": []})
    assert capsys.readouterr().out == "t at the system level: no rules (flag/t/system/rules v0)\n"


@pytest.mark.parametrize(
    ("content", "says"),
    [("[{", "not JSON"), ('{"id": "x"}', "a JSON list of rules"), ("[NaN]", "not JSON"), (None, "No such file")],
)
def test_a_file_that_is_not_a_list_is_a_usage_error(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "rules.json"
    if content is not None:
        path.write_text(content)
    args = build_parser().parse_args(["rules", "set", "t", "--file", str(path), "--reason", "r"])
    client = Client("http://command", "http://query", transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    try:
        with pytest.raises(UsageError, match=says):
            args.handler(client, args)
    finally:
        client.close()


def test_building_the_parser_imports_nothing_heavy() -> None:
    probe = ("import sys; from flagctl.main import build_parser; build_parser(); "
             "print(sorted(m for m in ('httpx', 'pydantic', 're2', 'semver') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
