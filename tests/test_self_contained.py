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
PACKAGES = ("proxy", "cli", "services", "upstream", "verifiers", "storage", "config", "oci")
"""The product's packages (pyproject's ``[tool.setuptools.packages.find]``)."""
_ROOT_PARENT = re.compile(r"\bROOT\.parent\b")
"""``ROOT`` names the repository's root by convention here; its parent is outside."""


def _python_files() -> list[Path]:
    return [
        path
        for top in ("tests", "bench", "fuzz", *PACKAGES)
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


CI_CLONE = "GATEKEEPER_CI_CLONE"
"""Set by ``.ci/run`` to the fresh clone it runs the whole suite in."""


def _is_ci_clone() -> bool:
    """This checkout is ``.ci/run``'s fresh clone, alone in its directory: the suite running
    now is the run in a fresh clone that the test below makes (for every test, not only the
    ``testdata`` ones), so making another one would only repeat it."""
    marked = os.environ.get(CI_CLONE) == str(ROOT)
    return marked and [p.name for p in ROOT.parent.iterdir()] == [ROOT.name]


@pytest.mark.slow
def test_data_dependent_tests_pass_in_a_fresh_clone(tmp_path: Path) -> None:
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode:
        pytest.skip(f"{ROOT} is not a git checkout: there is nothing to clone")
    if _is_ci_clone():
        pytest.skip(f"{ROOT} is .ci/run's fresh clone: this whole run is the run in a clone")
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


def test_only_cis_own_clone_counts_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The repetition is left out only where it would repeat: in .ci/run's clone, which is
    alone in its directory; a developer's checkout runs it."""
    import tests.test_self_contained as here

    clone = tmp_path / "work" / "registry-gatekeeper"
    clone.mkdir(parents=True)
    monkeypatch.setattr(here, "ROOT", clone)
    monkeypatch.delenv(CI_CLONE, raising=False)
    assert not _is_ci_clone()
    monkeypatch.setenv(CI_CLONE, str(clone))
    assert _is_ci_clone()
    (clone.parent / "shared").mkdir()  # something beside it: not a clone alone
    assert not _is_ci_clone()
    monkeypatch.setenv(CI_CLONE, str(tmp_path))
    (clone.parent / "shared").rmdir()
    assert not _is_ci_clone()
