"""flagctl's flag-semantics commands against the real services."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flagctl.main import main
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def run(stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    key = stack.headers["Authorization"].removeprefix("Bearer ")
    status = main(["--command-url", stack.command_url, "--query-url", stack.query_url, "--key", key, *argv])
    return status, capsys.readouterr().out


def test_define_schedule_list_kill_and_report(stack: Stack, capsys, org_id) -> None:
    exp, ops = f"exp.t{uuid.uuid4().hex[:8]}", f"ops.t{uuid.uuid4().hex[:8]}"
    status, out = run(
        stack,
        capsys,
        "define",
        exp,
        "--group",
        "exp",
        "--kind",
        "experiment",
        "--variant",
        "control=50",
        "--variant",
        "treatment=50",
        "--reason",
        "ab test",
        "--json",
    )
    assert status == 0 and json.loads(out)["events"][0]["new"]["variants"][1] == {"name": "treatment", "weight": 500}
    assert (
        run(
            stack,
            capsys,
            "define",
            ops,
            "--group",
            "ops",
            "--kind",
            "ops",
            "--owner",
            "sre",
            "--expires",
            "2020-01-01T00:00:00Z",
            "--reason",
            "x",
        )[0]
        == 0
    )

    at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    status, out = run(
        stack, capsys, "schedule", exp, "--org", org_id, "--at", at, "--on", "--rollout", "10", "--reason", "ramp"
    )
    assert status == 0 and "SettingScheduled" in out
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, out = run(stack, capsys, "schedules", "--org", org_id, "--flag", exp)
        if exp in out:
            break
        time.sleep(0.1)
    assert f"{at}  {exp}" in out and "on, rollout 10%" in out
    assert run(stack, capsys, "unschedule", exp, "--org", org_id, "--at", at, "--reason", "not yet")[0] == 0

    status, out = run(stack, capsys, "kill", ops, "--reason", "platform outage")
    assert status == 0 and "KillSwitchEngaged" in out
    status, out = run(stack, capsys, "unkill", ops, "--reason", "recovered")
    assert status == 0 and "KillSwitchReleased" in out
    assert run(stack, capsys, "kill", exp, "--reason", "not ops")[0] == 1  # 422: only ops flags

    status, out = run(stack, capsys, "flags", "stale", "--days", "30", "--json")
    report = {f["key"]: f for f in json.loads(out)["flags"]}
    assert status == 0 and report[ops]["reason"] == "expired" and report[ops]["owner"] == "sre"
    status, out = run(stack, capsys, "flags", "stale")
    assert ops in out and "expired 2020-01-01T00:00:00Z" in out
