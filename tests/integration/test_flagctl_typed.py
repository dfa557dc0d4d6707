"""flagctl's typed flags against the real services: README's example run verbatim, and the refusals it shows.

The example runs on a stack of its own (a fresh database and topic), so its fixed names (`checkout.theme`,
org `acme`) meet no other test's; flagctl finds the services and the key from the environment, as it does
after `scripts/up`.
"""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flagctl.main import main
from services.infra.settings import Settings
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"
READS = ("eval", "flags")  # answered by the query service once the projector has caught up


@pytest.fixture(scope="module")
def own_stack(make_settings: Callable[[], Settings], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(make_settings(), tmp_path_factory.mktemp("flagctl-typed"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def flagctl(own_stack: Stack, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setenv("FLAGS_COMMAND_URL", own_stack.command_url)
    monkeypatch.setenv("FLAGS_QUERY_URL", own_stack.query_url)
    monkeypatch.setenv("FLAGS_API_KEY", own_stack.headers["Authorization"].removeprefix("Bearer "))

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def readme_typed_example() -> list[list[str]]:
    """The flagctl commands of README's typed-flag example, as the shell splits them."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL)
    [block] = [b for b in blocks if "--type string" in b]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_readmes_typed_flag_example_runs_verbatim(flagctl: Callable[..., tuple[int, str, str]]) -> None:
    outputs = []
    for argv in readme_typed_example():
        assert argv[0] == ".venv/bin/flagctl", argv
        status, out, err = flagctl(*argv[1:])
        deadline = time.monotonic() + 20
        while argv[1] in READS and (status != 0 or "checkout.theme" not in out) and time.monotonic() < deadline:
            time.sleep(0.1)
            status, out, err = flagctl(*argv[1:])
        assert status == 0, (argv, out, err)
        outputs.append(out)
    defined, launched, org, split, evaluated, listed = outputs
    assert "FlagDefined" in defined and "SystemDefaultSet" in launched
    assert "VariantSelected" in org and "VariantSelected" in split
    assert json.loads(evaluated.split("  ")[0]) in ("#0000ff", "#1e1e1e")
    [line] = [row for row in listed.splitlines() if row.startswith("checkout.theme ")]
    assert line.split()[1:] == ["checkout", "release", "string", "default", "on"]
    status, out, _ = flagctl("eval", "checkout.theme", "--org", "acme")
    assert status == 0 and out.startswith('"#1e1e1e"  checkout.theme'), out


def test_a_refusal_names_its_field_and_nothing_is_written(flagctl: Callable[..., tuple[int, str, str]]) -> None:
    key = f"t.limit{uuid.uuid4().hex[:8]}"
    status, _, err = flagctl("define", key, "--group", "t", "--type", "integer", "--variant", "low=1.5",
                             "--variant", "high=100", "--default-variant", "high", "--off-variant", "low",
                             "--reason", "r")
    assert status == 1 and "422 invalid_request [variants.low]" in err, err
    status, _, err = flagctl("define", key, "--group", "t", "--type", "integer", "--variant", "low=one",
                             "--reason", "r")
    assert status == 2 and "--variant low: 'one' is not JSON" in err, err
    status, out, _ = flagctl("define", key, "--group", "t", "--type", "integer", "--variant", "low=1",
                             "--variant", "high=100", "--default-variant", "high", "--off-variant", "low",
                             "--reason", "limits", "--json")
    assert status == 0 and json.loads(out)["events"][0]["version"] == 1  # the refusals wrote nothing before it
    status, _, err = flagctl("set", key, "--org", "acme", "--variant", "medium", "--reason", "r")
    assert status == 1 and "[variant]" in err and "unknown variant 'medium'" in err, err
    status, _, err = flagctl("set", key, "--org", "acme", "--split", "low=300,high=600", "--reason", "r")
    assert status == 1 and "[split]" in err, err
    status, out, _ = flagctl("set", key, "--org", "acme", "--split", "low=300,high=700", "--reason", "r")
    assert status == 0 and "VariantSelected" in out
