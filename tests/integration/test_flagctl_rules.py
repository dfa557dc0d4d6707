"""flagctl's `rules set|show|clear` against the real command service (Postgres, its relay to Kafka): what it
prints, the refusals it shows (the field named), and that a refusal writes nothing.

flagctl finds the service and the key from the environment, as it does after `scripts/up`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from flagctl.main import main
from services.infra.settings import Settings
from tests.support.auth import admin_key
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

STAFF = {"id": "staff", "conditions": [{"attribute": "email", "operator": "ends_with", "values": ["@acme.com"]}],
         "variant": "dark"}  # fmt: skip

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def service(
    make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    settings = make_settings()
    health = f"http://127.0.0.1:{settings.command_port}/healthz"
    running = ServiceProcess("command", settings, Path(tmp_path_factory.mktemp("flagctl-rules")), health).start()
    yield running
    running.stop()


@pytest.fixture
def flagctl(service: ServiceProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    monkeypatch.setenv("FLAGS_COMMAND_URL", f"http://127.0.0.1:{service.settings.command_port}")
    monkeypatch.setenv("FLAGS_API_KEY", admin_key(service.settings))

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def _theme(flagctl: Run) -> str:
    key = f"t.theme{uuid.uuid4().hex[:8]}"
    status, _, err = flagctl("define", key, "--group", "t", "--type", "string", "--variant", 'blue="#00f"',
                             "--variant", 'dark="#000"', "--default-variant", "blue", "--off-variant", "dark",
                             "--reason", "themes")  # fmt: skip
    assert status == 0, err
    return key


def test_set_show_and_clear_an_orgs_rules(flagctl: Run, tmp_path: Path) -> None:
    key = _theme(flagctl)
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([STAFF]))
    status, out, err = flagctl("rules", "set", key, "--org", "acme", "--file", str(path), "--reason", "staff",
                               "--expect-version", "0")  # fmt: skip
    assert status == 0, err
    assert out.startswith(f"TargetingRulesSet  org/acme/flag/{key}/rules  v1  None -> ")
    status, out, _ = flagctl("rules", "show", key, "--org", "acme")
    assert (status, out.splitlines()) == (0, [
        f"{key} at org acme: 1 rule (org/acme/flag/{key}/rules v1)",
        '  1. staff: email ends_with "@acme.com" -> variant dark',
    ])  # fmt: skip
    status, out, _ = flagctl("rules", "show", key, "--org", "acme", "--json")
    shown = json.loads(out)
    path.write_text(out)  # what `show --json` prints is what `set` takes: the same list again changes nothing
    status, out, _ = flagctl("rules", "set", key, "--org", "acme", "--file", str(path), "--reason", "again")
    assert (status, out.strip()) == (0, f"unchanged: org/acme/flag/{key}/rules stays at version 1")

    status, _, err = flagctl("rules", "clear", key, "--org", "acme", "--reason", "r", "--expect-version", "0")
    assert status == 1 and "409 version_conflict" in err and "(current version 1)" in err, err
    status, out, err = flagctl("rules", "clear", key, "--org", "acme", "--reason", "done", "--expect-version", "1")
    assert status == 0 and "v2" in out and out.rstrip().endswith("-> None"), err
    status, out, _ = flagctl("rules", "show", key, "--org", "acme")
    assert out == f"{key} at org acme: no rules (org/acme/flag/{key}/rules v2)\n"
    assert shown["rules"][0]["id"] == "staff"


def test_a_refusal_names_its_field_and_writes_nothing(flagctl: Run, tmp_path: Path, service: ServiceProcess) -> None:
    key = _theme(flagctl)
    bad = [STAFF, {**STAFF, "id": "beta", "conditions": [{"attribute": "v", "operator": "semver_gte",
                                                          "values": ["2.x"]}]}]  # fmt: skip
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(bad))
    status, _, err = flagctl("rules", "set", key, "--file", str(path), "--reason", "r")
    assert status == 1 and "422 invalid_request [rules.1.conditions.0.values.0]" in err, err
    path.write_text("{not json")
    status, _, err = flagctl("rules", "set", key, "--file", str(path), "--reason", "r")
    assert status == 2 and "not JSON" in err, err
    status, _, err = flagctl("rules", "show", "t.no-such-flag")
    assert status == 1 and "404 unknown_flag" in err, err
    base = f"http://127.0.0.1:{service.settings.command_port}"
    head = httpx.get(f"{base}/v1/streams/flag/{key}/system/rules",
                     headers={"Authorization": f"Bearer {admin_key(service.settings)}"}).json()  # fmt: skip
    assert head["version"] == 0
