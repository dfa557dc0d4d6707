"""Every example of README.md, run verbatim and in order, as a new user runs them after `bash scripts/up`.

The README's fenced blocks are its examples: ```sh blocks run line by line in one bash session (so
`BEFORE` and `KEY`, set by one example, are there for the later ones), ```python blocks with the
repo's `.venv/bin/python` in that session's environment, and ```text blocks (output, or what needs a
browser or a terminal left running) are never run; a block in any other language, or none, fails
the test, so nothing is skipped without the README saying so.

The first block, "Two commands", is the precondition: its `bash scripts/up` is the first command of
the session, on the README's default ports (8081-8085, which must be free: a service already
answering there is not this install's). Its `bash scripts/test` is not run: it runs the whole suite,
this test included, so it would recurse; it is the command that runs this test.

A fresh install, on whichever servers `scripts/stack` runs here (FLAGS_STACK_DIR may name another
checkout's `.stack`): the session names a database, topics,
consumer groups, a Redis prefix and an admin key file of its own (`FLAGS_*`, which the scripts, the
services and flagctl all follow), so the state of an earlier `scripts/up` on the same servers is not
seen. At the end the services it started stop (`scripts/services stop`; the servers keep running) and
its database is dropped.

A read of the query service is re-run until it shows what the README says (up to 20 s): a user types
slower than the projector folds a change, a script does not.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from services.infra.sealing import new_key
from services.infra.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RUN = {"sh", "python"}
SHOWN = {"text"}  # read, never run
PRECONDITION = ["bash scripts/up", "bash scripts/test"]
NOT_RUN = {"bash scripts/test": "it runs the whole suite, this test included: it would recurse"}
PORTS = range(8081, 8086)  # command, query, console, projector, notifier: the README's URLs name them
RETRY_SECONDS = 20.0
TIMEOUT_SECONDS = {"bash scripts/up": 900.0}  # installs and starts everything; any other command: 300 s
# Services' addresses and keys the README does not set: the session must not inherit them.
UNSET = ("FLAGS_API_KEY", "FLAGS_COMMAND_URL", "FLAGS_QUERY_URL", "FLAGS_CONSOLE_URL", "FLAGS_NOTIFIER_URL",
         "FLAGS_COMMAND_PORT", "FLAGS_QUERY_PORT", "FLAGS_CONSOLE_PORT", "FLAGS_PROJECTOR_PORT",
         "FLAGS_NOTIFIER_PORT")


@dataclass(frozen=True)
class Example:
    """One command of the README: a line of a ```sh block, or a whole ```python block."""

    line: int  # in README.md, for the failure message
    command: str
    source: str = ""  # a python block's code

    @property
    def is_read(self) -> bool:
        """Answered by the query service, so it may run before the projector caught up; safe to repeat."""
        return bool(re.search(r"flagctl (eval|flags|schedules)\b|^curl |^\.venv/bin/python \S+\.py$", self.command))


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """(first line, language, body) of each fenced block, in order."""
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1), m.group(2))
        for m in re.finditer(r"^```([\w-]*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    ]


def readme_examples(text: str, scratch: Path) -> list[Example]:
    blocks = fenced_blocks(text)
    unmarked = [(line, lang) for line, lang, _ in blocks if lang not in RUN | SHOWN]
    assert not unmarked, f"README blocks neither run ({sorted(RUN)}) nor marked as shown ({sorted(SHOWN)}): {unmarked}"
    first_line, lang, body = blocks[0]
    assert lang == "sh" and _commands(body) == PRECONDITION, "README's first block must be the two commands"
    examples = [Example(first_line, c) for c in PRECONDITION if c not in NOT_RUN]
    for start, lang, body in blocks[1:]:
        if lang == "python":
            path = scratch / f"readme_line_{start}.py"
            path.write_text(body)
            examples.append(Example(start, f".venv/bin/python {path}", body))
        elif lang == "sh":
            for offset, line in enumerate(body.splitlines()):
                if _commands(line):  # the line as written, comment and all: bash reads it
                    assert not line.rstrip().endswith("\\"), f"README line {start + offset}: one command a line"
                    examples.append(Example(start + offset, line))
    return examples


def _commands(body: str) -> list[str]:
    """A block's commands without their comments (the README's comments start after two spaces)."""
    stripped = (re.split(r"\s{2,}#", line)[0].strip() for line in body.splitlines())
    return [c for c in stripped if c and not c.startswith("#")]


class Session:
    """One bash process, fed a command at a time; each command's output goes to files of its own."""

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self._scratch = scratch
        self._count = 0
        self._stderr = (scratch / "bash.err").open("wb")
        self._proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=REPO, env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)

    def run(self, command: str, timeout: float) -> Result:
        self._count += 1
        out, err = self._scratch / f"{self._count}.out", self._scratch / f"{self._count}.err"
        # The newline before `}` ends a trailing comment; braces keep assignments in this shell.
        script = f'{{ {command}\n}} >"{out}" 2>"{err}" </dev/null; echo "$?"\n'
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(script.encode())
        self._proc.stdin.flush()
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        assert ready, f"no answer within {timeout} s: {command}"
        status = self._proc.stdout.readline().decode().strip()
        assert status, f"bash died running {command!r}: {(self._scratch / 'bash.err').read_text()}"
        return Result(int(status), out.read_text(), err.read_text())

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._stderr.close()


def _json(out: str) -> dict[str, object]:
    loaded = json.loads(out)
    assert isinstance(loaded, dict), out
    return loaded


def _typed_flags_line(out: str) -> list[str]:
    [line] = [row for row in out.splitlines() if row.startswith("checkout.theme ")]
    return line.split()[1:]


# What the README says each command shows, by a piece of the command naming it (each names one command).
CHECKS: dict[str, Callable[[Result], bool]] = {
    "bash scripts/up": lambda r: "flagstream is running." in r.out,
    "eval --org acme --all": lambda r: len(r.out.splitlines()) >= 34 and "ai.insights.enabled" in r.out,
    "--platform tiktok --on": lambda r: " v1 " in r.out,
    "eval ai.insights.enabled --org acme --platform tiktok --json": lambda r: _json(r.out)["value"] is True,
    "--expect-version 0": lambda r: " v1 " in r.out,
    "audit --org acme\n": lambda r: "pilot for Acme" in r.out and "gradual" in r.out,
    "KEY=$(": lambda r: r.out == "",
    "curl ": lambda r: _json(r.out)["value"] is True and _json(r.out)["flag_key"] == "ai.insights.enabled",
    "--format csv > acme.csv": lambda r: "pilot for Acme" in (REPO / "acme.csv").read_text(),
    "audit verify  ": lambda r: re.search(r"^\d+ events in \d+ streams verified ", r.out, re.MULTILINE) is not None,
    "audit rollback": lambda r: "rolled back" in r.out,
    'at "$BEFORE" --org acme --platform meta': lambda r: r.out.startswith("acme at "),
    '--flag ai.insights.enabled --json': lambda r: _json(r.out)["org_id"] == "acme",
    "audit diff": lambda r: re.match(r"acme: \d+ flags changed between", r.out) is not None,
    "rebuild --switch": lambda r: r.out.startswith("switched over; the previous read models are in schema "),
    "audit verify --projection": lambda r: "read models match the log" in r.out,
    "flagctl schedules": lambda r: "ai.insights.enabled" in r.out,
    "define exp.checkout.enabled": lambda r: "FlagDefined" in r.out,
    "define checkout.theme": lambda r: "FlagDefined" in r.out,
    'set checkout.theme --on': lambda r: "SystemDefaultSet" in r.out,
    "--variant dark --reason": lambda r: "VariantSelected" in r.out,
    "--split blue=300,dark=700": lambda r: "VariantSelected" in r.out,
    "eval checkout.theme": lambda r: json.loads(r.out.split("  ")[0]) in ("#0000ff", "#1e1e1e"),
    "flagctl flags  ": lambda r: _typed_flags_line(r.out) == ["checkout", "release", "string", "default", "on"],
    "OFREPProvider": lambda r: "flag_key='ai.insights.enabled'" in r.out and "error_code=None" in r.out,
}


def _check_for(example: Example) -> Callable[[Result], bool] | None:
    text = (example.source or example.command) + "\n"
    found = [check for needle, check in CHECKS.items() if needle in text]
    assert len(found) <= 1, f"README line {example.line}: more than one check names {example.command!r}"
    return found[0] if found else None


def _passes(check: Callable[[Result], bool] | None, result: Result) -> bool:
    if result.status != 0:
        return False
    try:
        return check is None or check(result)
    except (ValueError, KeyError, FileNotFoundError):
        return False


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    taken = [p for p in PORTS if _port_taken(p)]
    assert not taken, f"ports {taken} are taken: the README's services need them (bash scripts/services stop)"
    run = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if k not in UNSET} | {
        "FLAGS_PG_DATABASE": f"flags_readme_{run}",
        "FLAGS_TOPIC": f"readme.{run}.changes",
        "FLAGS_DEAD_LETTER_TOPIC": f"readme.{run}.changes.dlq",
        "FLAGS_PROJECTOR_GROUP": f"readme-{run}-projector",
        "FLAGS_NOTIFIER_GROUP": f"readme-{run}-notifier",
        "FLAGS_REDIS_PREFIX": f"readme-{run}",
        "FLAGS_ADMIN_KEY_FILE": str(tmp_path / "admin.key"),
        "FLAGS_SUBSCRIPTION_KEY": new_key(),
    }
    shell = Session(env, tmp_path)
    try:
        yield shell
    finally:
        shell.close()
        subprocess.run(["bash", "scripts/services", "stop"], cwd=REPO, env=env, check=False)
        (REPO / "acme.csv").unlink(missing_ok=True)  # the audit example's export
        asyncio.run(_drop_database(env["FLAGS_PG_DATABASE"]))


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(Settings().pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_readme_blocks_are_run_or_marked_as_shown(tmp_path: Path) -> None:
    text = README.read_text()
    examples = readme_examples(text, tmp_path)
    assert [e.command for e in examples[:1]] == ["bash scripts/up"]
    for needle in CHECKS:
        named = [e for e in examples if needle in (e.source or e.command) + "\n"]
        assert len(named) == 1, f"the check {needle!r} names {len(named)} README commands, not one"


def test_every_readme_example_runs_verbatim_in_order(session: Session, tmp_path: Path) -> None:
    for example in readme_examples(README.read_text(), tmp_path):
        check = _check_for(example)
        timeout = TIMEOUT_SECONDS.get(example.command, 300.0)
        result = session.run(example.command, timeout)
        deadline = time.monotonic() + RETRY_SECONDS
        while example.is_read and not _passes(check, result) and time.monotonic() < deadline:
            time.sleep(0.2)
            result = session.run(example.command, timeout)
        where = f"README line {example.line}: {example.command}\n{result.out}\n{result.err}"
        assert result.status == 0, where
        assert _passes(check, result), f"not what the README says it shows: {where}"
