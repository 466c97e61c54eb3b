"""The repository is all the tests need: no test reads a file from beside the checkout.

A user who clones the project from its public home has only the clone. So the tests that read
data files (marked ``testdata``; the files are in ``tests/data``) are run here again in a fresh
``git clone`` of this checkout, alone in an empty directory: a data file that was never
committed, or a path that leaves the repository, fails there instead of skipping. The clone
holds what is committed (commit first). ``.ci/run`` runs the whole suite the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support import database

ROOT = Path(__file__).resolve().parents[1]
_PARENTS = re.compile(r"Path\(__file__\)\.resolve\(\)\.parents\[(\d+)\]")
PYTEST = (sys.executable, "-m", "pytest", "-q", "-m", "testdata", "-p", "no:cacheprovider")
PACKAGES = ("proxy", "cli", "services", "verifiers", "storage", "config", "oci")
"""The product's packages (pyproject's ``[tool.setuptools.packages.find]``)."""
_ROOT_PARENT = re.compile(r"\bROOT\.parent\b")
"""``ROOT`` names the repository's root by convention here; its parent is outside."""


def _python_files() -> list[Path]:
    return [
        path
        for top in (
            "tests",
            "bench",
            "fuzz",
            "proxy",
            "cli",
            "verifiers",
            "storage",
            "config",
            "oci",
        )
        for path in sorted((ROOT / top).rglob("*.py"))
    ]


def test_no_source_file_reaches_beside_the_checkout() -> None:
    """Fast and static: every ``Path(__file__).resolve().parents[N]`` stays inside the
    repository, and nothing goes up from its root (the data used to sit beside it)."""
    leaving = []
    for path in _python_files():
        text = path.read_text(encoding="utf-8")
        for match in _PARENTS.finditer(text):
            reached = path.resolve().parents[int(match.group(1))]
            if not reached.is_relative_to(ROOT):
                leaving.append(f"{path.relative_to(ROOT)}: parents[{match.group(1)}]")
        if path != Path(__file__).resolve() and _ROOT_PARENT.search(text):
            leaving.append(f"{path.relative_to(ROOT)}: goes up from the repository's root")
    assert not leaving, leaving


def _collected(where: Path, env: dict[str, str]) -> set[str]:
    """Node ids of the ``testdata`` tests as pytest collects them in ``where``."""
    done = subprocess.run(
        [*PYTEST, "--collect-only"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {line for line in done.stdout.splitlines() if "::" in line}


def _env(checkout: Path) -> dict[str, str]:
    """The checkout's own code first on the path, whatever the virtualenv was installed from."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(checkout),
        "GATEKEEPER_TEST_DB": database.backend(),
    }


@pytest.mark.slow
def test_data_dependent_tests_pass_in_a_fresh_clone(tmp_path: Path) -> None:
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode:
        pytest.skip(f"{ROOT} is not a git checkout: there is nothing to clone")
    empty = tmp_path / "empty"
    empty.mkdir()
    clone = empty / "registry-gatekeeper"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=300)
    assert sorted(p.name for p in empty.iterdir()) == [clone.name]  # nothing beside it

    expected = _collected(ROOT, _env(ROOT))
    assert _collected(clone, _env(clone)) == expected  # no case lost with a missing file
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [*PYTEST, f"--basetemp={tmp_path / 'inner'}", f"--junitxml={report}"],
        cwd=clone,
        env=_env(clone),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": len(expected), "failures": 0, "errors": 0, "skipped": 0}, run.stdout[
        -6000:
    ]
