"""Trust settings: validated at start-up with errors naming the field; rules and requirements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.policy import match_policy
from config.settings import VerifierSettings, load_settings
from tests.support import cosign
from verifiers.registry import VerifierConfigError, build_verifiers
from verifiers.signatures import SignatureVerifier
from verifiers.signatures.errors import SignatureConfigError
from verifiers.signatures.policy import AllOf, Required, Threshold, load_policy

PEM = cosign.public_pem(cosign.new_key()).decode()
ONLY_X = [{"name": "r", "repositories": ["*"], "signers": ["x"]}]


def options(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "signers": [
            {"name": "bot", "key": PEM},
            {"name": "ci", "identity": "ci@example.test", "issuer": "https://issuer.test"},
        ],
        "rules": [{"name": "all", "repositories": ["*"], "signers": ["bot", "ci"]}],
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"signers": [{"name": "x", "identity_regex": "(", "issuer": "i"}]},
            "signers.0.identity_regex: not a valid regular expression",
        ),
        (
            {"signers": [{"name": "x", "identity": "a@b"}]},
            "signers.0: set key or key_file, or both an identity and an issuer",
        ),
        (
            {"signers": [{"name": "x", "key": "junk"}], "rules": ONLY_X},
            "signers.0.key: not a PEM public key",
        ),
        (
            {"signers": [{"name": "x", "key_file": "/nonexistent/cosign.pub"}], "rules": ONLY_X},
            "signers.0.key_file: cannot read /nonexistent/cosign.pub",
        ),
        (
            {"rules": [{"name": "r", "repositories": ["*"], "signers": ["nobody"]}]},
            "rules.0.signers: unknown signers ['nobody']",
        ),
        (
            {"rules": [{"name": "r", "repositories": ["*"], "signers": ["bot"], "threshold": 2}]},
            "rules.0: threshold 2 exceeds the 1 signers listed",
        ),
        (
            {
                "rules": [
                    {"name": "r", "repositories": ["*"], "signers": ["bot"], "required": ["ci"]}
                ]
            },
            "rules.0: required signers ['ci'] are not in signers",
        ),
        ({"rules": []}, "rules: List should have at least 1 item"),
        ({"trusted_root": "/nonexistent/trusted_root.json"}, "trusted_root: cannot read"),
        ({"trusted": "typo"}, "trusted: Extra inputs are not permitted"),
    ],
)
def test_bad_options_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SignatureConfigError) as caught:
        load_policy(options(**change))
    assert message in str(caught.value)


def test_start_up_error_names_the_setting(tmp_path: Path) -> None:
    bad = VerifierSettings(options=options(rules=[{"name": "r", "repositories": ["*"]}]))
    with pytest.raises(VerifierConfigError) as caught:
        build_verifiers({"signatures": bad}, cache=None)  # type: ignore[arg-type]
    assert "verifiers.signatures.options.rules.0: signers: a signed rule needs" in str(caught.value)


def test_most_specific_rule_wins() -> None:
    policy = load_policy(
        options(
            rules=[
                {"name": "all", "repositories": ["*"], "signers": ["bot"]},
                {"name": "team", "repositories": ["team/*"], "signers": ["ci"]},
                {"name": "app", "repositories": ["team/app"], "signed": False},
            ]
        )
    )
    assert [policy.rule_for(r).name for r in ("x", "team/y", "team/app")] == ["all", "team", "app"]  # type: ignore[union-attr]
    assert (
        load_policy(
            options(rules=[{"name": "t", "repositories": ["t/*"], "signers": ["bot"]}])
        ).rule_for("other")
        is None
    )


def test_key_file_and_inline_key_are_the_same_signer(tmp_path: Path) -> None:
    (tmp_path / "cosign.pub").write_text(PEM)
    policy = load_policy(
        options(
            signers=[{"name": "bot", "key_file": str(tmp_path / "cosign.pub")}],
            rules=[{"name": "r", "repositories": ["*"], "signers": ["bot"]}],
        )
    )
    assert policy.rules[0].signers[0].key is not None


def test_requirements_compose_and_empty_denies() -> None:
    checks = AllOf((Threshold(2, ("a", "b", "c")), Required("a")))
    assert checks.failures(frozenset({"a", "b"})) == []
    assert [r for r, _ in checks.failures(frozenset({"b", "c"}))] == [
        "signature.required-signer-missing"
    ]
    assert [r for r, _ in checks.failures(frozenset({"a"}))] == ["signature.threshold-not-met"]
    assert [r for r, _ in checks.failures(frozenset())] == [
        "signature.none-trusted",
        "signature.required-signer-missing",
    ]
    assert [r for r, _ in AllOf(()).failures(frozenset({"a"}))] == ["signature.no-requirement"]


def test_fingerprint_follows_the_settings() -> None:
    assert load_policy(options()).fingerprint == load_policy(options()).fingerprint
    other = options(rules=[{"name": "all", "repositories": ["*"], "signers": ["bot"]}])
    assert load_policy(options()).fingerprint != load_policy(other).fingerprint


EXAMPLE = Path(__file__).resolve().parents[4] / "config" / "gatekeeper.example.toml"


def test_the_example_signature_settings_validate_once_uncommented(tmp_path: Path) -> None:
    """The commented ``[verifiers.signatures]`` block of the example file, uncommented where it
    stands, loads and builds (verifier options are validated when the verifier is built)."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [verifiers.signatures]")
    end = start
    while end < len(lines) and lines[end].startswith("# "):
        end += 1
    assert lines[end] == "", "the block ends at a blank line"
    lines[start:end] = [line.removeprefix("# ") for line in lines[start:end]]
    path = tmp_path / "gatekeeper.toml"
    path.write_text("\n".join(lines) + "\n")
    settings = load_settings(path, env={})
    built = build_verifiers(settings.verifiers, cache=None)  # type: ignore[arg-type]
    (verifier,) = [v for v in built if isinstance(v, SignatureVerifier)]
    prod = verifier.policy.rule_for("prod/app")
    assert prod is not None and prod.signatures_in("prod/app") == "sigs/prod/app"
    assert [s.name for s in prod.signers] == ["release-bot", "ci"]
    store = verifier.policy.rule_for("sigs/prod/app")
    assert store is not None and store.name == "signature-store" and store.signed
    other = verifier.policy.rule_for("team/app")
    assert other is not None and not other.signed
    assert match_policy(settings.policies, "sigs/prod/app").name == "signature-store"
    assert match_policy(settings.policies, "prod/app").name == "default"
