"""No function is over 60 lines (STYLE.md: small functions with one job), except in database
migrations, which record how the schema changed and are never edited. A long function is
split into named steps; the exemption is a place, never a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "proxy",
    "cli",
    "services",
    "upstream",
    "verifiers",
    "storage",
    "config",
    "oci",
    "tests",
    "bench",
    "fuzz",
)
EXEMPT = (ROOT / "storage" / "migrations",)
LIMIT = 60


def _too_long(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (lines := (node.end_lineno or node.lineno) - node.lineno + 1) > LIMIT
    ]


def test_no_function_is_over_sixty_lines() -> None:
    sources = [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if not any(path.is_relative_to(exempt) for exempt in EXEMPT)
    ]
    assert len(sources) > 300, "the walk found the sources"
    assert [entry for path in sources for entry in _too_long(path)] == []


def test_the_measure_counts_every_line_of_a_function(tmp_path: Path) -> None:
    body = "".join(f"    x{n} = {n}\n" for n in range(LIMIT - 1))
    (tmp_path / "fits.py").write_text(f"def fits():\n{body}")
    (tmp_path / "long.py").write_text(f"async def long():\n{body}    return x0\n")
    assert _too_long(tmp_path / "fits.py", tmp_path) == []
    assert _too_long(tmp_path / "long.py", tmp_path) == ["long.py:1 long (61 lines)"]
