"""``sigstore`` is imported when a bundle is first verified, not by a start or a CLI command
(it is about a second of CPU each time); a trusted root an operator names is still checked
by ``sigstore`` when it is loaded, so a bad one stops the start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from verifiers.signatures.policy import load_policy
from verifiers.signatures.trust import PUBLIC_GOOD, TrustRoot, TrustRootError

ROOT = Path(__file__).resolve().parents[4]
HEAVY = (
    "sigstore.models",
    "sigstore.verify",
    "sigstore_models",
    "tuf",
    "securesystemslib",
    "boto3",
)
"""What importing ``sigstore``'s verifier brings (the ``sigstore`` package itself is a few
lines: the public-good root's file is read from it)."""
KEYLESS = {
    "signers": [{"name": "ci", "identity": "ci@example.test", "issuer": "https://issuer.test"}],
    "rules": [{"name": "all", "repositories": ["*"], "signers": ["ci"]}],
}


def test_the_server_and_the_cli_start_without_importing_sigstore() -> None:
    script = (
        "import sys\n"
        "import proxy.app, cli.main\n"
        "from verifiers.signatures.policy import load_policy\n"
        f"load_policy({KEYLESS!r})\n"  # a keyless rule, on the public-good root
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_public_good_root_is_parsed_by_sigstore_on_first_use() -> None:
    root = TrustRoot.load(PUBLIC_GOOD)
    assert "sigstore" not in vars(root)
    assert root.sigstore.rekor_keyring is not None  # parsed now, and kept
    assert vars(root)["sigstore"] is root.sigstore
    assert load_policy(KEYLESS).trust_root.logs  # our own view needs no sigstore


def test_a_named_root_that_sigstore_refuses_stops_the_load(tmp_path: Path) -> None:
    public_good = json.loads(TrustRoot.load(PUBLIC_GOOD).raw)
    del public_good["mediaType"]  # our own view of the file does not read it; sigstore does
    bad = tmp_path / "trusted_root.json"
    bad.write_text(json.dumps(public_good))
    with pytest.raises(TrustRootError, match="is not a valid trusted root"):
        TrustRoot.load(str(bad))
