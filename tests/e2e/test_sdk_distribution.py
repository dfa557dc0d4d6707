"""The SDK installs alone: its wheel, in a fresh virtualenv, answers from a snapshot file and loads no service code.

Builds `sdk/` into a wheel, installs it into a new virtualenv that shares nothing with
this checkout's (its dependencies come from the package registry, or pip's cache), and
runs an application there: `FlagClient` with the query service and Kafka unreachable,
started from a snapshot file, must give `flagcore.evaluate`'s answers, with no
`services` module and none of the servers' libraries imported, or even installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from events import FlagDefined, Level, OrgOverrideSet, PlatformOverrideSet, RolloutPercentageSet, UserOverrideSet
from flagcore import evaluate, fold
from flagsdk.snapshot import dump
from tests.support.factories import LogBuilder
from tests.support.processes import REPO, free_port

pytestmark = pytest.mark.e2e

ORG = "acme"
FLAG = "ai.insights.enabled"
CONTEXTS = [(None, None), ("meta", None), ("tiktok", "u-1"), (None, "u-2"), (None, "u-3"), ("meta", "u-4")]
# The servers' own packages and libraries: an application that only evaluates flags needs none of them.
SERVER_ONLY = ["services", "fastapi", "starlette", "asyncpg", "granian", "jinja2", "faststream", "redis"]

APPLICATION = """
import importlib.util, json, sys
from flagsdk import FlagClient

query_url, kafka, snapshot, contexts, server_only = sys.argv[1:]
client = FlagClient(
    query_url=query_url, api_key="evaluator-key", org_id="acme", kafka={"bootstrap_servers": kafka},
    snapshot_path=snapshot, timeout=2, reconnect_delay=0.1,
)
with client:
    answers = []
    for platform, user in json.loads(contexts):
        r = client.evaluate("ai.insights.enabled", platform=platform, user=user)
        fast = client.is_enabled("ai.insights.enabled", platform=platform, user=user)
        answers.append([r.value, fast, r.reason.value, None if r.level is None else r.level.value, r.variant])
    source = client.status().source
names = json.loads(server_only)
print(json.dumps({
    "answers": answers,
    "source": source,
    "flagsdk": sys.modules["flagsdk"].__file__,
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in names),
    "installed": sorted(n for n in names if importlib.util.find_spec(n) is not None),
}))
"""


def build_wheel(out: Path) -> Path:
    """The SDK's wheel, built from `sdk/` with the build backend of this checkout's environment."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO / "sdk")],
        check=True, capture_output=True, timeout=120,
    )
    [wheel] = out.glob("flagstream_sdk-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A virtualenv of the base interpreter (no access to this checkout's site-packages) with only the wheel."""
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(path)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    return python


def test_the_sdk_wheel_installs_alone_and_answers_from_a_snapshot_file(tmp_path: Path) -> None:
    log = LogBuilder()
    log.extend([
        FlagDefined(flag_key=FLAG, group="ai"),
        OrgOverrideSet(flag_key=FLAG, org_id=ORG, enabled=True),
        RolloutPercentageSet(flag_key=FLAG, level=Level.ORG, org_id=ORG, percentage=50),
        PlatformOverrideSet(flag_key=FLAG, org_id=ORG, platform="meta", enabled=False),
        UserOverrideSet(flag_key=FLAG, org_id=ORG, user_id="u-1", enabled=True),
    ])
    state = fold(log.events)
    snapshot = tmp_path / "flags-acme.json"
    snapshot.write_bytes(dump(state, org_id=ORG, topic="flags.changes", offsets={0: 5}))
    expected = []
    for platform, user in CONTEXTS:
        e = evaluate(state.catalog, state.tenant(ORG), FLAG, platform=platform, user_id=user)
        expected.append([e.value, e.value, e.reason.value, None if e.level is None else e.level.value, e.variant])

    python = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "dist"))
    unreachable = f"127.0.0.1:{free_port()}"  # nothing listens: no query service, no Kafka
    app = tmp_path / "app"
    app.mkdir()
    # -I: the application's own directory, PYTHONPATH and the user site stay out of sys.path,
    # so nothing can come from this checkout.
    ran = subprocess.run(
        [str(python), "-I", "-c", APPLICATION, f"http://{unreachable}", unreachable, str(snapshot),
         json.dumps(CONTEXTS), json.dumps(SERVER_ONLY)],
        cwd=app, capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    got = json.loads(ran.stdout)

    assert Path(got["flagsdk"]).is_relative_to(tmp_path / "venv")
    assert got["source"] == "snapshot"
    assert got["answers"] == expected
    assert got["imported"] == []
    assert got["installed"] == []
