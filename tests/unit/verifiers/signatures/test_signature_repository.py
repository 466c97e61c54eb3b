"""Signatures kept in a signature repository (cosign's ``COSIGN_REPOSITORY``): a rule's
``signature_repository`` is where the ``.sig`` tag and the referrers are looked up, and the only
place; the payload must still name the image's own repository."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from config.settings import VerifierSettings
from tests.fakes.signatures import REGISTRY, FakeRegistry, FakeRepository
from tests.support import cosign
from verifiers.base import Finding, Skipped, VerifierError
from verifiers.registry import VerifierConfigError, build_verifiers
from verifiers.registry_names import RegistryNames
from verifiers.signatures import SignatureVerifier
from verifiers.signatures.errors import SignatureConfigError
from verifiers.signatures.policy import load_policy

PEM = cosign.public_pem(cosign.new_key()).decode()


@dataclass
class World:
    bot: cosign.PrivateKey
    sigstore: cosign.PrivateSigstore
    verifier: SignatureVerifier


def rule(name: str, repositories: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "repositories": repositories, "signers": ["bot"], **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("trust")
    sigstore = cosign.PrivateSigstore()
    (tmp / "trusted_root.json").write_text(json.dumps(sigstore.trusted_root()))
    bot = cosign.new_key("p256")
    options: dict[str, Any] = {
        "trusted_root": str(tmp / "trusted_root.json"),
        "signers": [{"name": "bot", "key": cosign.public_pem(bot).decode()}],
        "rules": [
            rule("fixed", ["app/*"], require_tlog=False, signature_repository="sigs/app"),
            rule(
                "template",
                ["team/*"],
                require_tlog=False,
                signature_repository="sigs/{repository}",
            ),
            rule("bundles", ["bundled/*"], signature_repository="sigs/bundled"),
            rule("local", ["local/*"], require_tlog=False),
        ],
    }
    verifier = SignatureVerifier(options)
    verifier.know_registry(RegistryNames.of([REGISTRY]))
    return World(bot, sigstore, verifier)


def image(registry: FakeRegistry, name: str) -> tuple[FakeRepository, str]:
    repo = registry.repository(name)
    return repo, repo.add_image()


def signature(world: World, repo: FakeRepository, digest: str) -> cosign.SigLayer:
    """Signed for the image's own repository: cosign names the image, not where it stores."""
    return cosign.key_signature(world.bot, repo.reference(), digest)


async def run(world: World, repo: FakeRepository, digest: str) -> list[Finding] | Skipped:
    return await world.verifier.verify(repo.image(digest))


def rules(found: list[Finding] | Skipped) -> list[str]:
    assert not isinstance(found, Skipped), found
    return [f.rule_id for f in found]


async def test_signature_repository_is_read_for_tag_and_payload(world: World) -> None:
    registry = FakeRegistry()
    repo, digest = image(registry, "app/x")
    sigs = registry.repository("sigs/app")
    sigs.sign(digest, signature(world, repo, digest))
    assert await run(world, repo, digest) == []
    assert registry.opened == ["sigs/app"]
    assert cosign.signature_tag(digest) not in repo.manifests, "nothing was stored beside it"
    report = await world.verifier.examine(repo.image(digest))
    assert not isinstance(report, Skipped)
    assert report.notes[0] == "signatures are stored in sigs/app (rule fixed)"
    (checked,) = report.checked
    assert checked.source == f"cosign tag sigs/app:{cosign.signature_tag(digest)}, layer 1"


async def test_template_names_one_signature_repository_per_image_repository(
    world: World,
) -> None:
    registry = FakeRegistry()
    repo, digest = image(registry, "team/api")
    registry.repository("sigs/team/api").sign(digest, signature(world, repo, digest))
    assert await run(world, repo, digest) == []
    other, other_digest = image(registry, "team/web")
    registry.repository("sigs/team/api").sign(other_digest, signature(world, other, other_digest))
    assert rules(await run(world, other, other_digest)) == ["signature.none-trusted"]
    assert registry.opened == ["sigs/team/api", "sigs/team/web"]


async def test_a_signature_beside_the_image_or_in_another_repository_does_not_count(
    world: World,
) -> None:
    registry = FakeRegistry()
    repo, digest = image(registry, "app/y")
    repo.sign(digest, signature(world, repo, digest))
    registry.repository("sigs/other").sign(digest, signature(world, repo, digest))
    (finding,) = await run(world, repo, digest)  # type: ignore[misc]
    assert finding.rule_id == "signature.none-trusted"
    assert finding.title == (
        f"no trusted signature: the image is not signed (no {cosign.signature_tag(digest)} tag "
        "and no bundle referrer in signature repository sigs/app)"
    )
    assert f"no cosign signature tag sigs/app:{cosign.signature_tag(digest)}" in finding.evidence


async def test_the_payload_must_still_name_the_image_repository(world: World) -> None:
    registry = FakeRegistry()
    repo, digest = image(registry, "app/z")
    sigs = registry.repository("sigs/app")
    sigs.sign(digest, cosign.key_signature(world.bot, f"{REGISTRY}/sigs/app", digest))
    assert rules(await run(world, repo, digest)) == [
        "signature.none-trusted",
        "signature.reference-mismatch",
    ]


async def test_bundle_referrers_are_found_in_the_signature_repository(world: World) -> None:
    registry = FakeRegistry()
    repo, digest = image(registry, "bundled/app")
    sigs = registry.repository("sigs/bundled")
    other = repo.add_image()
    sigs.attach_bundle(other, world.sigstore.key_bundle(world.bot, other))
    assert rules(await run(world, repo, digest)) == ["signature.none-trusted"]
    sigs.attach_bundle(digest, world.sigstore.key_bundle(world.bot, digest))
    assert await run(world, repo, digest) == []
    beside, beside_digest = image(registry, "bundled/beside")
    beside.attach_bundle(beside_digest, world.sigstore.key_bundle(world.bot, beside_digest))
    assert rules(await run(world, beside, beside_digest)) == ["signature.none-trusted"]


async def test_without_a_signature_repository_nothing_else_is_opened(world: World) -> None:
    registry = FakeRegistry()
    repo, digest = image(registry, "local/app")
    repo.sign(digest, signature(world, repo, digest))
    assert await run(world, repo, digest) == []
    assert registry.opened == []


async def test_an_image_that_cannot_reach_other_repositories_fails_closed(world: World) -> None:
    lonely = FakeRepository("app/lonely")
    digest = lonely.add_image()
    with pytest.raises(VerifierError, match="cannot read repository sigs/app"):
        await run(world, lonely, digest)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("sigs/{repo}", "the only placeholder is {repository}"),
        ("Sigs/App", "'Sigs/App' is not a repository name"),
        ("registry.example.test:5000/sigs", "without the registry host"),
        ("sigs//app", "is not a repository name"),
        ("", "is not a repository name"),
    ],
)
def test_bad_signature_repository_names_the_field(value: str, words: str) -> None:
    options = {
        "signers": [{"name": "bot", "key": PEM}],
        "rules": [rule("r", ["*"], signature_repository=value)],
    }
    with pytest.raises(SignatureConfigError) as caught:
        load_policy(options)
    assert str(caught.value).startswith("rules.0.signature_repository: ")
    assert words in str(caught.value)


def test_an_unsigned_rule_takes_no_signature_repository() -> None:
    options = {
        "signers": [{"name": "bot", "key": PEM}],
        "rules": [
            {"name": "r", "repositories": ["*"], "signed": False, "signature_repository": "s/x"}
        ],
    }
    bad = VerifierSettings(options=options)
    with pytest.raises(VerifierConfigError) as caught:
        build_verifiers({"signatures": bad}, cache=None)  # type: ignore[arg-type]
    assert (
        "verifiers.signatures.options.rules.0: signature_repository: a rule with signed = false"
        in str(caught.value)
    )


def test_rule_names_where_its_signatures_are() -> None:
    policy = load_policy(
        {
            "signers": [{"name": "bot", "key": PEM}],
            "rules": [rule("t", ["team/*"], signature_repository="sigs/{repository}")],
        }
    )
    (found,) = policy.rules
    assert found.signatures_in("team/api") == "sigs/team/api"
    assert found.describe().endswith("; signatures in sigs/{repository}")
