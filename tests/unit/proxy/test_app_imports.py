"""What every gatekeeper process imports at start, kept to what every process needs (issue 15:
under 150 MB resident per process; ``bench/rss_bench.py`` measures it).

The signature verifier's stack, ``univers`` and cyclonedx-python-lib are loaded on first use:
by a process that verifies signatures, matches advisories or answers an SBOM request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ON_FIRST_USE = ("verifiers.signatures.verifier", "rfc3161_client", "univers", "cyclonedx")


def _imported_after(code: str) -> list[str]:
    listed = f"sorted(m for m in sys.modules if m.startswith({ON_FIRST_USE!r}))"
    script = f"import json, sys\n{code}\nprint(json.dumps({listed}))"
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return list(json.loads(run.stdout))


def test_the_server_and_the_cli_import_none_of_them_at_start() -> None:
    assert _imported_after("import proxy.app, cli.main, config.settings") == []


def test_each_is_there_when_used() -> None:
    found = _imported_after(
        "from verifiers.signatures import SignatureVerifier\n"
        "from verifiers.vulns.versions import order_for\n"
        "from verifiers.scan.cyclonedx import to_cyclonedx\n"
        "assert SignatureVerifier.__module__ == 'verifiers.signatures.verifier'\n"
        "assert order_for('PyPI', 'ECOSYSTEM').__name__ == 'PypiVersion'"
    )
    assert {name.split(".")[0] for name in found} >= {"verifiers", "rfc3161_client", "univers"}
    assert "cyclonedx" in {name.split(".")[0] for name in found}
