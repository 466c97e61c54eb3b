"""Notary Project signatures through the ``signatures`` verifier, over an in-memory repository.

Envelopes are made per the specification (tests/support/notation.py) in both formats; each
failing case yields the finding that names its step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.fakes.signatures import FakeRepository
from tests.support import cosign, notation
from verifiers.base import Finding, Severity, Skipped
from verifiers.registry_names import RegistryNames
from verifiers.signatures import SignatureVerifier
from verifiers.signatures.errors import SignatureConfigError

HOST = "registry.example.test"
ACME = "x509.subject: C=US, ST=WA, O=acme"
FORMATS = {"JWS": (notation.JWS, notation.jws), "COSE": (notation.COSE, notation.cose)}


@dataclass
class World:
    acme: notation.Pki
    stranger: notation.Pki
    authority: notation.Pki
    revoked: tuple[Any, notation.SigningKey]
    bot: cosign.PrivateKey
    options: dict[str, Any]
    verifier: SignatureVerifier


def _policy(name: str, scope: str, level: str, stores: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "registryScopes": [scope],
        "signatureVerification": {"level": level, **extra},
        "trustStores": stores,
        "trustedIdentities": [ACME] if stores else [],
    }


TRUST_POLICIES = [
    _policy("acme-images", "*", "strict", ["ca:acme"]),
    _policy("lenient", f"{HOST}/lenient/app", "permissive", ["ca:acme"]),
    _policy("auditing", f"{HOST}/audit/app", "audit", ["ca:acme"]),
    _policy("authority", f"{HOST}/sa/app", "strict", ["signingAuthority:sa"]),
    _policy("skipped", f"{HOST}/skip/app", "skip", []),
    _policy(
        "no-expiry",
        f"{HOST}/custom/app",
        "strict",
        ["ca:acme"],
        override={"expiry": "log"},
    ),
]
"""One Notation trust policy per verification level and trust-store kind under test."""
NOTATION_SIGNERS = [
    {"name": "acme", "notation_policy": "acme-images"},
    {"name": "lenient", "notation_policy": "lenient"},
    {"name": "auditor", "notation_policy": "auditing"},
    {"name": "authority", "notation_policy": "authority"},
    {"name": "skipped", "notation_policy": "skipped"},
    {"name": "custom", "notation_policy": "no-expiry"},
]
RULES = [
    {"name": "notary", "repositories": ["notary/*"], "signers": ["acme"]},
    {
        "name": "both",
        "repositories": ["both/*"],
        "signers": ["bot", "acme"],
        "threshold": 2,
        "require_tlog": False,
    },
    {
        "name": "either",
        "repositories": ["either/*"],
        "signers": ["bot", "acme"],
        "require_tlog": False,
    },
    {
        "name": "notation-required",
        "repositories": ["required/*"],
        "signers": ["bot", "acme"],
        "required": ["acme"],
        "require_tlog": False,
    },
    {"name": "lenient", "repositories": ["lenient/*"], "signers": ["lenient"]},
    {"name": "audit", "repositories": ["audit/*"], "signers": ["auditor"]},
    {"name": "sa", "repositories": ["sa/*"], "signers": ["authority"]},
    {"name": "skip", "repositories": ["skip/*"], "signers": ["skipped"]},
    {"name": "custom", "repositories": ["custom/*"], "signers": ["custom"]},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("notation")
    acme, stranger, authority = (
        notation.Pki("Acme Root"),
        notation.Pki("Evil Root"),
        notation.Pki("SA Root"),
    )
    acme.write_store(tmp / "store", "ca", "acme")
    authority.write_store(tmp / "store", "signingAuthority", "sa")
    revoked = acme.issue(crl_url="http://crl.example.test/acme.crl")
    (tmp / "acme.crl").write_bytes(acme.crl([revoked[0]], next_update=timedelta(days=7)))
    bot = cosign.new_key("p256")
    options: dict[str, Any] = {
        "notation": {
            "trust_store": str(tmp / "store"),
            "registry_hosts": [HOST],
            "crl_files": [str(tmp / "acme.crl")],
            "trust_policy": {"version": "1.0", "trustPolicies": TRUST_POLICIES},
        },
        "signers": [{"name": "bot", "key": cosign.public_pem(bot).decode()}, *NOTATION_SIGNERS],
        "rules": RULES,
    }
    return World(acme, stranger, authority, revoked, bot, options, verifier_of(options))


def verifier_of(options: dict[str, Any]) -> SignatureVerifier:
    """The verifier as the gatekeeper builds it: told the registry's names (cosign payloads
    must name one; the fakes' references use ``HOST``)."""
    verifier = SignatureVerifier(options)
    verifier.know_registry(RegistryNames.of([HOST]))
    return verifier


def image(name: str) -> tuple[FakeRepository, str]:
    repo = FakeRepository(name)
    return repo, repo.add_image()


def sign(
    world: World,
    repo: FakeRepository,
    digest: str,
    fmt: str,
    *,
    pki: notation.Pki | None = None,
    cert: tuple[Any, notation.SigningKey] | None = None,
    body: bytes | None = None,
    attributes: notation.Attributes | None = None,
    bend: Callable[[bytes, str], bytes] | None = None,
) -> None:
    media_type, make = FORMATS[fmt]
    pki = pki or world.acme
    leaf, key = cert or pki.issue()
    body = body or notation.payload(digest, len(repo.manifests[digest]))
    envelope = make(body, key, pki.chain(leaf), attributes)
    if bend is not None:
        envelope = bend(envelope, media_type)
    repo.attach_notation(digest, envelope, media_type)


async def findings(world: World, repo: FakeRepository, digest: str) -> list[Finding]:
    found = await world.verifier.verify(repo.image(digest))
    assert not isinstance(found, Skipped), found
    return found


def rule_ids(found: list[Finding]) -> list[str]:
    return [f.rule_id for f in found]


@pytest.fixture(params=sorted(FORMATS))
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_valid_signature_passes(world: World, fmt: str) -> None:
    repo, digest = image("notary/app")
    sign(world, repo, digest, fmt)
    assert await findings(world, repo, digest) == []


async def test_unsigned_image_names_notation_in_the_reason(world: World) -> None:
    repo, digest = image("notary/none")
    (finding,) = await findings(world, repo, digest)
    assert finding.rule_id == "signature.none-trusted"
    assert "no bundle or Notation referrer" in finding.title


def _other_payload(envelope: bytes, media_type: str) -> bytes:
    body = notation.payload("sha256:" + "0" * 64, 1)
    return notation.tamper_payload(envelope, media_type, body)


@dataclass(frozen=True)
class Case:
    rule: str
    words: str
    sign: Callable[[World, FakeRepository, str, str], None]


def _expired_cert(world: World) -> tuple[Any, notation.SigningKey]:
    past = datetime.now(UTC) - timedelta(days=60)
    return world.acme.issue(not_before=past, lifetime=timedelta(days=30))


def _mallory(world: World) -> tuple[Any, notation.SigningKey]:
    return world.acme.issue(notation._name(C="US", ST="CA", O="mallory", CN="release"))


CASES = {
    "tampered payload": Case(
        "notation.signature-invalid",
        "changed after signing",
        lambda w, r, d, f: sign(w, r, d, f, bend=_other_payload),
    ),
    "wrong digest": Case(
        "notation.digest-mismatch",
        "the signature is for sha256:1111",
        lambda w, r, d, f: sign(w, r, d, f, body=notation.payload("sha256:" + "1" * 64, 10)),
    ),
    "wrong size": Case(
        "notation.digest-mismatch",
        "the signature says the manifest is 3 bytes",
        lambda w, r, d, f: sign(w, r, d, f, body=notation.payload(d, 3)),
    ),
    "untrusted root": Case(
        "notation.untrusted-certificate",
        "leads to no certificate of the trust stores ca:acme",
        lambda w, r, d, f: sign(w, r, d, f, pki=w.stranger),
    ),
    "identity not in policy": Case(
        "notation.identity-not-trusted",
        "signed by C=US, ST=CA, O=mallory, CN=release",
        lambda w, r, d, f: sign(w, r, d, f, cert=_mallory(w)),
    ),
    "expired certificate": Case(
        "notation.certificate-expired",
        "not at",
        lambda w, r, d, f: sign(w, r, d, f, cert=_expired_cert(w)),
    ),
    "unknown critical attribute": Case(
        "notation.unknown-critical-attribute",
        "io.cncf.notary.verificationPlugin",
        lambda w, r, d, f: sign(
            w,
            r,
            d,
            f,
            attributes=notation.Attributes(
                extended={"io.cncf.notary.verificationPlugin": "com.example.plugin"},
                critical_extended=["io.cncf.notary.verificationPlugin"],
            ),
        ),
    ),
    "expired signature": Case(
        "notation.expired",
        "the signature expired",
        lambda w, r, d, f: sign(
            w, r, d, f, attributes=notation.Attributes(expiry=datetime.now(UTC) - timedelta(days=1))
        ),
    ),
    "revoked certificate": Case(
        "notation.revoked",
        "was revoked",
        lambda w, r, d, f: sign(w, r, d, f, cert=w.revoked),
    ),
    "not an envelope": Case(
        "notation.envelope-invalid",
        "not",
        lambda w, r, d, f: sign(w, r, d, f, bend=lambda e, m: e[: len(e) // 2]),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_failure_names_its_step(world: World, fmt: str, name: str) -> None:
    case = CASES[name]
    repo, digest = image(f"notary/{name.replace(' ', '-')}")
    case.sign(world, repo, digest, fmt)
    found = await findings(world, repo, digest)
    assert rule_ids(found) == ["signature.none-trusted", case.rule], found
    title = found[1].title
    assert title.startswith("step '") and case.words in title, title
    assert found[1].severity is Severity.HIGH
    assert "Notation signature" in found[1].location


async def test_notation_and_cosign_count_together(world: World, fmt: str) -> None:
    repo, digest = image("both/app")
    sign(world, repo, digest, fmt)
    found = await findings(world, repo, digest)
    assert rule_ids(found) == ["signature.threshold-not-met"]
    assert "1 did (acme)" in found[0].title
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), digest))
    assert await findings(world, repo, digest) == []


async def test_either_kind_satisfies_a_one_of_two_rule(world: World, fmt: str) -> None:
    repo, digest = image("either/app")
    sign(world, repo, digest, fmt)
    assert await findings(world, repo, digest) == []


async def test_a_required_notation_signer_is_not_replaced_by_cosign(world: World) -> None:
    repo, digest = image("required/app")
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), digest))
    assert rule_ids(await findings(world, repo, digest)) == ["signature.required-signer-missing"]
    sign(world, repo, digest, "COSE")
    assert await findings(world, repo, digest) == []


async def test_permissive_logs_an_expired_signature(world: World, fmt: str) -> None:
    repo, digest = image("lenient/app")
    past = datetime.now(UTC) - timedelta(days=1)
    sign(world, repo, digest, fmt, attributes=notation.Attributes(expiry=past))
    found = await findings(world, repo, digest)
    assert rule_ids(found) == ["notation.expired"]
    assert found[0].severity is Severity.LOW and "logged only" in found[0].title


async def test_permissive_still_enforces_authenticity(world: World, fmt: str) -> None:
    repo, digest = image("lenient/app")
    sign(world, repo, digest, fmt, pki=world.stranger)
    assert "notation.untrusted-certificate" in rule_ids(await findings(world, repo, digest))


async def test_audit_logs_an_untrusted_root_but_enforces_integrity(world: World, fmt: str) -> None:
    repo, digest = image("audit/app")
    sign(world, repo, digest, fmt, pki=world.stranger)
    found = await findings(world, repo, digest)
    assert set(rule_ids(found)) == {"notation.untrusted-certificate"}
    assert all(f.severity is Severity.LOW for f in found)
    tampered, other = image("audit/app")
    sign(world, tampered, other, fmt, bend=_other_payload)
    assert "notation.signature-invalid" in rule_ids(await findings(world, tampered, other))


async def test_override_logs_expiry_under_strict(world: World) -> None:
    repo, digest = image("custom/app")
    past = datetime.now(UTC) - timedelta(days=1)
    sign(world, repo, digest, "JWS", attributes=notation.Attributes(expiry=past))
    found = await findings(world, repo, digest)
    assert rule_ids(found) == ["notation.expired"] and found[0].severity is Severity.LOW


async def test_signing_authority_scheme(world: World, fmt: str) -> None:
    repo, digest = image("sa/app")
    attributes = notation.Attributes(scheme=notation.AUTHORITY)
    sign(world, repo, digest, fmt, pki=world.authority, attributes=attributes)
    assert await findings(world, repo, digest) == []
    # The same certificate under notary.x509 needs a ca store, which this policy lacks.
    other_repo, other = image("sa/app")
    sign(world, other_repo, other, fmt, pki=world.authority)
    found = await findings(world, other_repo, other)
    assert "notation.untrusted-certificate" in rule_ids(found)
    assert "a ca trust store" in found[1].title


async def test_signing_authority_time_must_be_within_the_chain(world: World) -> None:
    repo, digest = image("sa/app")
    long_ago = datetime.now(UTC) - timedelta(days=400)
    attributes = notation.Attributes(scheme=notation.AUTHORITY, signing_time=long_ago)
    sign(world, repo, digest, "COSE", pki=world.authority, attributes=attributes)
    found = await findings(world, repo, digest)
    assert rule_ids(found) == ["signature.none-trusted", "notation.certificate-expired"]


async def test_skip_level_needs_no_signature(world: World) -> None:
    repo, digest = image("skip/app")
    report = await world.verifier.examine(repo.image(digest))
    assert not isinstance(report, Skipped)
    assert report.passed and report.signed_by == {"skipped"}
    assert any("level skip" in note for note in report.notes)


async def test_a_repository_no_scope_covers_is_not_trusted(tmp_path: Path, world: World) -> None:
    options = json.loads(json.dumps(world.options))
    policies = options["notation"]["trust_policy"]["trustPolicies"]
    policies[0]["registryScopes"] = [f"{HOST}/elsewhere/app"]
    verifier = verifier_of(options)
    repo, digest = image("notary/app")
    sign(world, repo, digest, "JWS")
    found = await verifier.verify(repo.image(digest))
    assert not isinstance(found, Skipped)
    assert rule_ids(found) == ["signature.none-trusted", "notation.no-trust-policy"]
    assert "no trust policy's registryScopes covers notary/app" in found[1].title


async def test_verify_steps_are_numbered_for_the_cli(world: World) -> None:
    repo, digest = image("notary/steps")
    sign(world, repo, digest, "COSE")
    report = await world.verifier.examine(repo.image(digest))
    assert not isinstance(report, Skipped)
    (checked,) = report.checked
    names = [s.name for s in checked.steps]
    assert names[0] == "the referrer is a Notation signature about this image"
    assert "the signature verifies with the signing certificate's key" in names
    assert names[-1] == "no certificate of the chain is revoked"
    assert checked.signer == "acme"


def _with(world: World, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    options: dict[str, Any] = json.loads(json.dumps(world.options))
    change(options)
    return options


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(options: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = options
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_set("signers.1.notation_policy", "nope"), "no Notation trust policy named 'nope'"),
        (
            _set("notation.trust_policy.trustPolicies.1.registryScopes", ["other.test/x/y"]),
            "names registry 'other.test', which is not in notation.registry_hosts",
        ),
        (
            _set("notation.trust_policy.trustPolicies.0.trustedIdentities", ["x509.subject: O=x"]),
            "must name C, ST (or S) and O",
        ),
        (
            _set("notation.trust_policy.trustPolicies.0.trustStores", ["ca:missing"]),
            "trust store ca:missing",
        ),
        (
            _set("notation.trust_policy.trustPolicies.0.signatureVerification.level", "lax"),
            "signatureVerification.level",
        ),
        (
            _set("notation.trust_policy.trustPolicies.1.registryScopes", ["*"]),
            "only one policy may use the global scope",
        ),
        (_set("notation.crl_files", ["/nonexistent.crl"]), "notation.crl_files.0: cannot read"),
    ],
)
def test_bad_notation_settings_name_the_field(
    world: World, change: Callable[[dict[str, Any]], None], words: str
) -> None:
    with pytest.raises(SignatureConfigError) as raised:
        SignatureVerifier(_with(world, change))
    assert words in str(raised.value), str(raised.value)


def test_overlapping_identities_are_refused(world: World) -> None:
    identities = [ACME, "x509.subject: C=US, ST=WA, O=acme, CN=release"]
    change = _set("notation.trust_policy.trustPolicies.0.trustedIdentities", identities)
    with pytest.raises(SignatureConfigError, match="overlap"):
        SignatureVerifier(_with(world, change))


def test_a_symlinked_store_is_refused(world: World, tmp_path: Path) -> None:
    store = Path(world.options["notation"]["trust_store"])
    (store / "x509" / "ca" / "linked").symlink_to(store / "x509" / "ca" / "acme")
    try:
        change = _set("notation.trust_policy.trustPolicies.0.trustStores", ["ca:linked"])
        with pytest.raises(SignatureConfigError, match="symbolic link"):
            SignatureVerifier(_with(world, change))
    finally:
        (store / "x509" / "ca" / "linked").unlink()


def test_trust_policy_from_notations_own_file(world: World, tmp_path: Path) -> None:
    policy_file = tmp_path / "trustpolicy.json"
    policy_file.write_text(json.dumps(world.options["notation"]["trust_policy"]))
    options = json.loads(json.dumps(world.options))
    del options["notation"]["trust_policy"]
    options["notation"]["trust_policy_file"] = str(policy_file)
    assert SignatureVerifier(options).policy.notation is not None
    policy_file.write_text('{"version": "2.0", "trustPolicies": []}')
    with pytest.raises(SignatureConfigError, match=r"notation\.trust_policy_file: version"):
        SignatureVerifier(options)


def test_a_changed_trust_store_changes_the_version(world: World, tmp_path: Path) -> None:
    other = notation.Pki("Other Root")
    store = Path(world.options["notation"]["trust_store"])
    before = SignatureVerifier(world.options).version
    (store / "x509" / "ca" / "acme" / "extra.pem").write_bytes(
        other.root.public_bytes(serialization.Encoding.PEM)
    )
    try:
        assert SignatureVerifier(world.options).version != before
    finally:
        (store / "x509" / "ca" / "acme" / "extra.pem").unlink()


def _with_tsa(world: World, tmp_path: Path, verify_timestamp: str) -> SignatureVerifier:
    """The global policy with a ``tsa`` store (any root will do: no token is valid here)."""
    notation.Pki("TSA Root").write_store(
        Path(world.options["notation"]["trust_store"]), "tsa", "tsa"
    )
    options = json.loads(json.dumps(world.options))
    policy = options["notation"]["trust_policy"]["trustPolicies"][0]
    policy["trustStores"] = ["ca:acme", "tsa:tsa"]
    policy["signatureVerification"]["verifyTimestamp"] = verify_timestamp
    return SignatureVerifier(options)


async def test_a_tsa_store_requires_a_timestamp(world: World, tmp_path: Path, fmt: str) -> None:
    verifier = _with_tsa(world, tmp_path, "always")
    repo, digest = image("notary/stamped")
    sign(world, repo, digest, fmt)
    found = await verifier.verify(repo.image(digest))
    assert not isinstance(found, Skipped)
    assert rule_ids(found) == ["signature.none-trusted", "notation.timestamp-invalid"]
    assert "has no timestamp" in found[1].title


async def test_after_cert_expiry_asks_for_no_timestamp_while_valid(
    world: World, tmp_path: Path
) -> None:
    verifier = _with_tsa(world, tmp_path, "afterCertExpiry")
    repo, digest = image("notary/unstamped")
    sign(world, repo, digest, "JWS")
    assert await verifier.verify(repo.image(digest)) == []
    expired, other = image("notary/unstamped-expired")
    sign(world, expired, other, "JWS", cert=_expired_cert(world))
    found = await verifier.verify(expired.image(other))
    assert not isinstance(found, Skipped)
    assert "notation.timestamp-invalid" in rule_ids(found)


async def test_a_garbled_timestamp_token_is_refused(world: World, tmp_path: Path) -> None:
    verifier = _with_tsa(world, tmp_path, "always")
    repo, digest = image("notary/garbled")

    def add_token(envelope: bytes, media_type: str) -> bytes:
        doc = json.loads(envelope)
        doc["header"]["io.cncf.notary.timestampSignature"] = "MAMCAQA="
        return json.dumps(doc).encode()

    sign(world, repo, digest, "JWS", bend=add_token)
    found = await verifier.verify(repo.image(digest))
    assert not isinstance(found, Skipped)
    assert rule_ids(found) == ["signature.none-trusted", "notation.timestamp-invalid"]
    assert "does not parse" in found[1].title
