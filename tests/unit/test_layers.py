"""The house's rooms and who may import whom, checked on the source (ast), not by convention.

Only ``cli/`` parses a command line; the packages it starts (``proxy``, ``services`` and the
libraries below them) take typed settings and arguments, so none of them imports ``argparse``.
``bench/`` and ``fuzz/`` are tools with command lines of their own, each read in one module
(``bench/cli.py``, ``fuzz/cli.py``); ``tests/`` is not walked. ``proxy`` (the HTTP side) may
import ``services`` (the background work); ``services`` does not import ``proxy``: both reach
the upstream registry through ``upstream``.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("proxy", "services", "upstream", "verifiers", "storage", "config", "oci")
"""Every package of the product but ``cli``."""


def imported_modules(path: Path) -> tuple[tuple[int, str], ...]:
    """Each absolute module ``path`` imports, with its line (relative imports are not used)."""
    return _parsed(path.resolve(), path.stat().st_mtime_ns)


@functools.cache
def _parsed(path: Path, _mtime: int) -> tuple[tuple[int, str], ...]:
    return tuple(_imports(path))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
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


TOOL_CLIS = {"bench": "bench/cli.py", "fuzz": "fuzz/cli.py"}
"""Each tool package's one command-line module."""


@pytest.mark.parametrize("tool", sorted(TOOL_CLIS))
def test_each_tool_reads_its_command_line_in_one_module(tool: str) -> None:
    """The benchmarks and the fuzzer take typed arguments; their options are parsed once."""
    assert [entry.split(":")[0] for entry in importers((tool,), "argparse")] == [TOOL_CLIS[tool]]


def test_nothing_below_the_cli_imports_it() -> None:
    """``proxy/__main__.py`` is the ``python -m proxy`` shim and the one way in."""
    assert [entry.split(":")[0] for entry in importers(LIBRARIES, "cli")] == ["proxy/__main__.py"]


def test_services_do_not_import_the_http_side() -> None:
    assert importers(("services",), "proxy") == []


def test_storage_imports_nothing_above_it() -> None:
    """The access log's hash chain included: its pure rules are ``storage/audit_hashing.py``."""
    above = ("proxy", "services", "upstream", "cli")
    assert [entry for top in above for entry in importers(("storage",), top)] == []


MAY_IMPORT = {
    "cli": {"proxy", "services", "upstream", "verifiers", "storage", "config", "oci"},
    "proxy": {"services", "upstream", "verifiers", "storage", "config", "oci"},
    "services": {"upstream", "verifiers", "storage", "config", "oci"},
    "upstream": {"verifiers", "storage", "config", "oci"},
    "storage": {"verifiers", "config", "oci"},
    "verifiers": {"config", "oci"},
    "config": {"verifiers", "oci"},
    "oci": set(),
}
"""Which of our packages each package may import: what its ``__init__`` docstring says."""
EXCEPTIONS = {
    "proxy/__main__.py cli.entry",  # the ``python -m proxy`` shim
}
"""Single imports across the rule, by file."""


def test_each_package_imports_only_what_its_docstring_says() -> None:
    crossing = [
        entry
        for package, allowed in MAY_IMPORT.items()
        for other in MAY_IMPORT.keys() - allowed - {package}
        for entry in importers((package,), other)
        if _file_and_module(entry) not in EXCEPTIONS
    ]
    assert crossing == []


def test_every_exception_is_still_taken() -> None:
    taken = {
        _file_and_module(entry)
        for package in MAY_IMPORT
        for other in MAY_IMPORT
        for entry in importers((package,), other)
    }
    assert taken >= EXCEPTIONS


def _file_and_module(entry: str) -> str:
    """``proxy/x.py:12 a.b`` -> ``proxy/x.py a.b``."""
    where, module = entry.split(" ")
    return f"{where.split(':')[0]} {module}"


def test_the_walk_sees_imports_in_functions_too(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    import argparse\n    from a.b import c\n")
    assert sorted(imported_modules(source)) == [(1, "os"), (4, "argparse"), (5, "a.b")]
