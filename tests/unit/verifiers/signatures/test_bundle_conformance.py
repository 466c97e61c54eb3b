"""The Sigstore conformance suite's bundle-verification cases, each through our bundle check.

A case whose folder ends in ``_fail`` must fail; every other case must pass, identity included
(the default identity and issuer are the conformance beacon's, as the suite's README says).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.testdata import SIGSTORE_BUNDLES
from verifiers.signatures.bundle import Artifact, verify_bundle
from verifiers.signatures.errors import StepFailed
from verifiers.signatures.keyless import identity_of
from verifiers.signatures.keys import KeyFormatError, PublicKey
from verifiers.signatures.trust import PUBLIC_GOOD, TrustRoot, TrustRootError

pytestmark = pytest.mark.testdata

CASES = SIGSTORE_BUNDLES
IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
ISSUER = "https://token.actions.githubusercontent.com"


def _cases() -> list[str]:
    if not CASES.is_dir():
        return []
    return sorted(p.name for p in CASES.iterdir() if (p / "bundle.sigstore.json").exists())


def _text(case: Path, name: str, default: str) -> str:
    path = case / name
    return path.read_text().strip() if path.exists() else default


def verify_case(case: Path) -> None:
    """Raises (StepFailed, TrustRootError, KeyFormatError) when the case does not verify."""
    artifact = case / "artifact" if (case / "artifact").exists() else CASES / "a.txt"
    root = case / "trusted_root.json"
    trust = TrustRoot.load(str(root) if root.exists() else PUBLIC_GOOD)
    keys = (
        [PublicKey.from_pem((case / "key.pub").read_bytes())] if (case / "key.pub").exists() else []
    )
    verified = verify_bundle(
        (case / "bundle.sigstore.json").read_bytes(),
        Artifact.of(artifact.read_bytes()),
        trust,
        keys,
    )
    if verified.certificate is not None:
        identity = identity_of(verified.certificate)
        expected = _text(case, "identity", IDENTITY), _text(case, "issuer", ISSUER)
        if expected[0] not in identity.names or identity.issuer != expected[1]:
            raise StepFailed("signature.identity-mismatch", identity.describe())


def test_the_suite_is_there() -> None:
    assert len(_cases()) >= 70, f"conformance cases missing under {CASES}"


@pytest.mark.parametrize("name", _cases())
def test_conformance_case(name: str) -> None:
    case = CASES / name
    if name.endswith("_fail"):
        with pytest.raises((StepFailed, TrustRootError, KeyFormatError)):
            verify_case(case)
    else:
        verify_case(case)
