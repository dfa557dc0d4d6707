"""`flagctl keys create`: the key is shown once, and `--quiet` shows it alone, for `KEY=$(flagctl keys create ...)`."""

from __future__ import annotations

import json

import httpx
import pytest

from flagctl.client import Client
from flagctl.main import build_parser

CREATED = {"id": "k-1", "key": "fsk_secret", "role": "evaluator", "org_id": "acme", "name": "web"}


def create(*options: str) -> list[dict[str, object]]:
    """Run `keys create` with `options` against a command API that creates CREATED; the bodies sent."""
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(201, json=CREATED)

    args = build_parser().parse_args(["keys", "create", "--role", "evaluator", "--org", "acme", "--name", "web",
                                      *options])
    client = Client("http://command", "http://query", key="k", transport=httpx.MockTransport(handler))
    try:
        assert args.handler(client, args) == 0
    finally:
        client.close()
    return sent


def test_quiet_prints_the_key_alone(capsys: pytest.CaptureFixture[str]) -> None:
    [body] = create("--quiet")
    assert body == {"name": "web", "role": "evaluator", "org_id": "acme", "reason": "created with flagctl"}
    assert capsys.readouterr().out == "fsk_secret\n"


def test_without_options_the_key_comes_with_what_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    create()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("created key k-1 (evaluator, org acme)") and lines[-1] == "fsk_secret"


def test_quiet_and_json_are_one_or_the_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["keys", "create", "--role", "evaluator", "--name", "web", "--json", "--quiet"])
    assert refused.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
