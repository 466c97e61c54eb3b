"""Notary Project signatures end to end: images and Notation signature referrers pushed through a
real gatekeeper into the real registry, then pulled, or denied with the failed step.

Envelopes are made per the specification by ``tests.support.notation`` and pushed the way
``notation sign`` pushes them (envelope blob, empty config, manifest with ``subject`` and
artifact type ``application/vnd.cncf.notary.signature``, by digest).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import notation
from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper, run_cli
from tests.support.registry import Registry
from tests.support.signing import (
    ACCEPT,
    Unpushed,
    build,
    denial,
    events,
    findings,
    pull,
    wait_pull,
)

pytestmark = pytest.mark.e2e

ACME = "x509.subject: C=US, ST=WA, O=acme"
FORMATS = {"JWS": (notation.JWS, notation.jws), "COSE": (notation.COSE, notation.cose)}


class Pkis:
    def __init__(self) -> None:
        self.acme = notation.Pki("Acme Root")
        self.stranger = notation.Pki("Stranger Root")


@pytest.fixture(scope="module")
def pkis() -> Pkis:
    return Pkis()


@pytest.fixture(scope="module")
def gk(
    registry: Registry, pkis: Pkis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    tmp = tmp_path_factory.mktemp("notation-trust")
    pkis.acme.write_store(tmp / "store", "ca", "acme")
    policy = {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "acme-images",
                "registryScopes": ["*"],
                "signatureVerification": {"level": "strict"},
                "trustStores": ["ca:acme"],
                "trustedIdentities": [ACME],
            }
        ],
    }
    (tmp / "trustpolicy.json").write_text(json.dumps(policy))
    options = {
        "notation": {
            "trust_store": str(tmp / "store"),
            "trust_policy_file": str(tmp / "trustpolicy.json"),
        },
        "signers": [{"name": "acme", "notation_policy": "acme-images"}],
        "rules": [{"name": "notary", "repositories": ["notary/*"], "signers": ["acme"]}],
    }
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [
                {
                    "name": "signed",
                    "repositories": ["notary/*"],
                    "require": ["config-sanity", "signatures"],
                    "pending": "hold",
                    "hold_seconds": 20,
                }
            ]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {"config-sanity": {}, "signatures": {"options": options}}
        ),
    }
    with running_gatekeeper(tmp_path_factory.mktemp("gk-notation"), registry.url, env) as started:
        yield started


@pytest.fixture
def http(gk: Gatekeeper) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gk.url, timeout=60) as client:
        yield client


def _sign(
    image: Unpushed,
    fmt: str,
    pki: notation.Pki,
    *,
    cert: tuple[Any, notation.SigningKey] | None = None,
    body: bytes | None = None,
    attributes: notation.Attributes | None = None,
) -> tuple[bytes, str]:
    media_type, make = FORMATS[fmt]
    leaf, key = cert or pki.issue()
    body = body or notation.payload(image.digest, len(image.manifest))
    return make(body, key, pki.chain(leaf), attributes), media_type


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_signature_pushed_after_the_image_releases_it(
    gk: Gatekeeper, http: httpx.Client, pkis: Pkis, fmt: str
) -> None:
    image = build(f"notary/late-{fmt.lower()}")
    digest = image.push(http)
    message = denial(pull(http, image.repo))
    assert "signature.none-trusted" in message and digest in message
    assert (
        "no bundle or Notation referrer"
        in findings(gk, image.repo, digest)["signature.none-trusted"]
    )
    envelope, media_type = _sign(image, fmt, pkis.acme)
    sig = notation.push_signature(
        http, image.repo, digest, len(image.manifest), envelope, media_type
    )
    resp = wait_pull(http, image.repo, 200)
    assert resp.status_code == 200, resp.text
    assert resp.content == image.manifest
    history = [(e["event"], e["actor"]) for e in events(gk, image.repo, digest)]
    assert history[-2:] == [("quarantined", "gatekeeper"), ("passed", "gatekeeper")], history
    # notation verify finds the signature through the referrers API and reads it back.
    listed = http.get(f"/v2/{image.repo}/referrers/{digest}")
    assert listed.status_code == 200
    assert [m["artifactType"] for m in listed.json()["manifests"]] == [notation.ARTIFACT_TYPE]
    assert http.get(f"/v2/{image.repo}/manifests/{sig}", headers=ACCEPT).status_code == 200


def _expired(pkis: Pkis) -> tuple[Any, notation.SigningKey]:
    past = datetime.now(UTC) - timedelta(days=60)
    return pkis.acme.issue(not_before=past, lifetime=timedelta(days=30))


Signer = Callable[[Unpushed, str, Pkis], tuple[bytes, str]]


def _tampered(image: Unpushed, fmt: str, pkis: Pkis) -> tuple[bytes, str]:
    envelope, media_type = _sign(image, fmt, pkis.acme)
    other = notation.payload("sha256:" + "0" * 64, 1)
    return notation.tamper_payload(envelope, media_type, other), media_type


VECTORS: dict[str, tuple[Signer, str, str]] = {
    # vector: (how it is signed, rule id of the signature's finding, words of its title)
    "tampered payload": (_tampered, "notation.signature-invalid", "changed after signing"),
    "wrong digest": (
        lambda i, f, p: _sign(i, f, p.acme, body=notation.payload("sha256:" + "1" * 64, 9)),
        "notation.digest-mismatch",
        "the signature is for sha256:1111",
    ),
    "untrusted root": (
        lambda i, f, p: _sign(i, f, p.stranger),
        "notation.untrusted-certificate",
        "leads to no certificate of the trust stores ca:acme",
    ),
    "identity not in policy": (
        lambda i, f, p: _sign(
            i, f, p.acme, cert=p.acme.issue(notation._name(C="US", ST="CA", O="mallory"))
        ),
        "notation.identity-not-trusted",
        "signed by C=US, ST=CA, O=mallory",
    ),
    "expired certificate": (
        lambda i, f, p: _sign(i, f, p.acme, cert=_expired(p)),
        "notation.certificate-expired",
        "not at",
    ),
    "unknown critical attribute": (
        lambda i, f, p: _sign(
            i,
            f,
            p.acme,
            attributes=notation.Attributes(
                extended={"com.example.mustUnderstand": "yes"},
                critical_extended=["com.example.mustUnderstand"],
            ),
        ),
        "notation.unknown-critical-attribute",
        "com.example.mustUnderstand",
    ),
    "expired signature": (
        lambda i, f, p: _sign(
            i, f, p.acme, attributes=notation.Attributes(expiry=datetime.now(UTC) - timedelta(1))
        ),
        "notation.expired",
        "the signature expired",
    ),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_each_failing_vector_quarantines_with_its_finding(
    gk: Gatekeeper, http: httpx.Client, pkis: Pkis, vector: str, fmt: str
) -> None:
    make, rule, words = VECTORS[vector]
    image = build(f"notary/{vector.replace(' ', '-')}-{fmt.lower()}")
    envelope, media_type = make(image, fmt, pkis)
    # Signed first, so the image's first verdict already sees the signature.
    notation.push_signature(
        http, image.repo, image.digest, len(image.manifest), envelope, media_type
    )
    digest = image.push(http)
    message = denial(pull(http, image.repo))
    assert "signature.none-trusted" in message and rule in message, message
    found = findings(gk, image.repo, digest)
    assert rule in found, found
    assert found[rule].startswith("step '") and words in found[rule], found[rule]


def _cli(gk: Gatekeeper, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(gk, *args, timeout=120)


def test_verify_prints_the_notation_steps(gk: Gatekeeper, http: httpx.Client, pkis: Pkis) -> None:
    image = build("notary/cli")
    digest = image.push(http)
    envelope, media_type = _sign(image, "COSE", pkis.acme)
    notation.push_signature(http, image.repo, digest, len(image.manifest), envelope, media_type)
    out = _cli(gk, "verify", f"{image.repo}@{digest}")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "(Notation signature)" in text
    assert "ok    the signature verifies with the signing certificate's key — ES256" in text
    assert "ok    the chain leads to a ca trust store — ca:acme (" in text
    assert "      => counts as acme" in text.splitlines()
    assert text.splitlines()[-1] == "result: PASSED"
    keys = _cli(gk, "keys", "--repository", "notary/app")
    assert keys.returncode == 0, keys.stderr
    assert "Notation trust policy acme-images (strict; ca:acme)" in keys.stdout
    data = json.loads(_cli(gk, "keys", "--json").stdout)
    assert data["rules"][0]["signers"][0]["kind"] == "notation"
