"""flagctl's typed-flag commands: what `define`, `set` and `flags` send and print, on a fake HTTP transport."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from flagctl.client import Client
from flagctl.errors import ApiError, UsageError
from flagctl.main import build_parser

CHANGED = {"changed": True, "events": [{"type": "FlagDefined", "stream": "flag/t", "version": 1, "previous": None,
                                        "new": {}}]}


def run(*argv: str, answer: httpx.Response | None = None) -> tuple[list[dict[str, Any]], list[httpx.Request]]:
    """Run one flagctl command against a transport that answers `answer` (else CHANGED); the bodies sent."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer or httpx.Response(201, json=CHANGED)

    args = build_parser().parse_args(list(argv))
    client = Client("http://command", "http://query", key="k", transport=httpx.MockTransport(handler))
    try:
        assert args.handler(client, args) == 0
    finally:
        client.close()
    return [json.loads(r.content) for r in seen if r.content], seen


def test_define_sends_a_typed_flags_variants_as_json_values() -> None:
    bodies, seen = run("define", "checkout.theme", "--group", "checkout", "--type", "string",
                       "--variant", 'blue="#00f"', "--variant", 'dark="#000"',
                       "--default-variant", "blue", "--off-variant", "dark", "--reason", "themes")
    assert seen[0].method == "POST" and seen[0].url.path == "/v1/flags"
    assert bodies[0]["type"] == "string"
    assert bodies[0]["variants"] == {"blue": "#00f", "dark": "#000"}
    assert (bodies[0]["default_variant"], bodies[0]["off_variant"]) == ("blue", "dark")


@pytest.mark.parametrize(("value_type", "given", "sent"), [
    ("integer", "3", 3),
    ("float", "2.5", 2.5),
    ("object", '{"rows": 2, "cols": [1, 2]}', {"rows": 2, "cols": [1, 2]}),
    ("string", '"say \\"hi\\""', 'say "hi"'),
])
def test_each_type_is_written_as_json(value_type: str, given: str, sent: Any) -> None:
    bodies, _ = run("define", "t.x", "--group", "t", "--type", value_type, "--variant", f"a={given}",
                    "--default-variant", "a", "--off-variant", "a", "--reason", "r")
    assert bodies[0]["variants"] == {"a": sent}


def test_variants_can_come_from_a_json_file(tmp_path: Path) -> None:
    file = tmp_path / "layouts.json"
    file.write_text(json.dumps({"grid": {"rows": 2}, "list": {"rows": 1}}))
    bodies, _ = run("define", "t.layout", "--group", "t", "--type", "object", "--variants-file", str(file),
                    "--default-variant", "grid", "--off-variant", "list", "--reason", "r")
    assert bodies[0]["variants"] == {"grid": {"rows": 2}, "list": {"rows": 1}}


@pytest.mark.parametrize(("argv", "says"), [
    (["--type", "string", "--variant", "blue=#00f"], "--variant blue: '#00f' is not JSON"),
    (["--type", "float", "--variant", "a=NaN"], "--variant a: 'NaN' is not JSON"),
    (["--type", "string", "--variant", "blue"], "give NAME=JSON"),
    (["--type", "integer", "--variant", "a=1", "--variant", "a=2"], "--variant a: given twice"),
    (["--variant", 'blue="#00f"'], "need --type"),
    (["--variants-file", "x.json"], "--variants-file: name the flag's type with --type"),
])
def test_variants_that_cannot_be_sent_are_refused_before_sending(argv: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        run("define", "t.x", "--group", "t", *argv, "--reason", "r")


def test_a_variants_file_that_is_not_an_object_of_json_is_refused(tmp_path: Path) -> None:
    for content, says in (("{nope", "not JSON"), ('["a"]', "a JSON object of variant name")):
        (tmp_path / "v.json").write_text(content)
        with pytest.raises(UsageError, match=says):
            run("define", "t.x", "--group", "t", "--type", "string", "--variants-file", str(tmp_path / "v.json"),
                "--reason", "r")
    with pytest.raises(UsageError, match=re.escape("missing.json")):
        run("define", "t.x", "--group", "t", "--type", "string", "--variants-file", str(tmp_path / "missing.json"),
            "--reason", "r")


def test_a_boolean_flags_variants_are_still_experiment_arms() -> None:
    bodies, _ = run("define", "exp.a", "--group", "exp", "--kind", "experiment", "--variant", "control=50",
                    "--variant", "new=50", "--reason", "ab")
    assert bodies[0]["variants"] == [{"name": "control", "weight": 50}, {"name": "new", "weight": 50}]
    assert "type" not in bodies[0] and "default_variant" not in bodies[0]


@pytest.mark.parametrize(("argv", "path", "sent"), [
    (["--org", "acme", "--variant", "green"], "/v1/orgs/acme/flags/t.theme", {"variant": "green"}),
    (["--org", "acme", "--platform", "meta", "--split", "blue=300,dark=700"],
     "/v1/orgs/acme/platforms/meta/flags/t.theme",
     {"split": [{"name": "blue", "weight": 300}, {"name": "dark", "weight": 700}]}),
    (["--org", "acme", "--user", "u-1", "--no-variant"], "/v1/orgs/acme/users/u-1/flags/t.theme", {"variant": None}),
    (["--on", "--variant", "blue"], "/v1/flags/t.theme/system", {"enabled": True, "variant": "blue"}),
])
def test_set_chooses_what_a_level_serves(argv: list[str], path: str, sent: dict[str, Any]) -> None:
    bodies, seen = run("set", "t.theme", *argv, "--reason", "r")
    assert seen[0].method == "PUT" and seen[0].url.path == path
    assert bodies[0] == {"reason": "r", **sent}


@pytest.mark.parametrize("split", ["blue", "blue=x", "=300", ","])
def test_a_split_that_is_not_names_and_weights_is_a_usage_error(split: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["set", "t.theme", "--split", split, "--reason", "r"])
    assert exit_.value.code == 2


def test_a_variant_and_a_split_together_are_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["set", "t.theme", "--variant", "a", "--split", "a=1000", "--reason", "r"])


def test_the_apis_refusal_is_shown_with_the_field_it_names() -> None:
    refusal = {"error": "invalid_request", "detail": "variants.blue: not a string: 3", "field": "variants.blue"}
    with pytest.raises(ApiError) as refused:
        run("define", "t.x", "--group", "t", "--type", "string", "--variant", "blue=3", "--reason", "r",
            answer=httpx.Response(422, json=refusal))
    assert str(refused.value) == "422 invalid_request [variants.blue]: variants.blue: not a string: 3"


def test_flags_shows_each_flags_type_and_what_its_system_default_serves(capsys: pytest.CaptureFixture[str]) -> None:
    system = {"enabled": True, "rollout_percentage": 25, "variant": None,
              "split": [{"name": "blue", "weight": 300}, {"name": "dark", "weight": 700}]}
    listing = {"flags": [
        {"key": "t.theme", "group": "t", "kind": "release", "value_type": "string", "archived": False,
         "system": system},
        {"key": "t.plain", "group": "t", "kind": "release", "value_type": "boolean", "archived": False,
         "system": {"enabled": False, "rollout_percentage": None, "variant": None, "split": None}},
        {"key": "t.new", "group": "t", "kind": "ops", "value_type": "integer", "archived": False, "system": None},
    ]}
    run("flags", answer=httpx.Response(200, json=listing))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["t.theme", "t", "release", "string", "default", "on", "at", "25%,", "split",
                                "blue=300,dark=700"]
    assert lines[1].split() == ["t.plain", "t", "release", "boolean", "default", "off"]
    assert lines[2].split() == ["t.new", "t", "ops", "integer", "default", "unset"]
