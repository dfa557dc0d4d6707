"""The architecture, checked by tools rather than by review: import-linter's contracts (pyproject.toml), and
the shape of the tests themselves."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dependencies_point_inward_as_the_contracts_say() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module or module.name) for every import in `path`, relative ones resolved."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            yield from ((node.lineno, f"{source}.{alias.name}") for alias in node.names)


def is_shared(name: str) -> bool:
    return name == "tests.support" or name.startswith("tests.support.")


def test_no_test_module_imports_another_test_module() -> None:
    """What tests share lives in tests/support/; a test module (or conftest.py) is imported by pytest alone."""
    found = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        for line, name in imported(path)
        if (name == "tests" or name.startswith("tests.")) and not is_shared(name)
    ]
    assert not found, "\n".join(found)
