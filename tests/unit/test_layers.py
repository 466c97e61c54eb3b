"""The house's rooms and who may import whom, checked on the source (ast), not by convention.

Only ``cli/`` parses a command line; the packages it starts (``proxy`` and the libraries below
it) take typed settings and arguments, so none of them imports ``argparse``. ``fuzz/``,
``bench/`` and ``tests/`` are tools with command lines of their own and are not walked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("proxy", "verifiers", "storage", "config", "oci")
"""Every package of the product but ``cli``."""


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Each absolute module ``path`` imports, with its line (relative imports are not used)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def importers(packages: tuple[str, ...], top: str) -> list[str]:
    """``file:line module`` for each import of ``top`` (or one of its modules) in ``packages``."""
    return [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] == top
    ]


def test_only_the_cli_parses_arguments() -> None:
    assert importers(("cli",), "argparse"), "the walk sees the CLI's own argparse imports"
    assert importers(LIBRARIES, "argparse") == []


def test_nothing_below_the_cli_imports_it() -> None:
    """``proxy/__main__.py`` is the ``python -m proxy`` shim and the one way in."""
    assert [entry.split(":")[0] for entry in importers(LIBRARIES, "cli")] == ["proxy/__main__.py"]


def test_the_walk_sees_imports_in_functions_too(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    import argparse\n    from a.b import c\n")
    assert sorted(imported_modules(source)) == [(1, "os"), (4, "argparse"), (5, "a.b")]
