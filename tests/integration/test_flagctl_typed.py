"""flagctl's typed flags against the real services: the refusals it shows, and that they write nothing.

README's typed-flag example is run, verbatim and in order with the others, by
tests/e2e/test_readme_examples.py. flagctl finds the services and the key from the environment, as it
does after `scripts/up`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest

from flagctl.main import main
from services.infra.settings import Settings
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.integration


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
