"""Warnings about settings that are valid but do not do what they seem to (issue 16): a required
verifier that cannot block anything under its policy, and key signers that need a log proof."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config.policy import Policy
from config.settings import VerifierSettings, load_settings
from tests.support.gatekeeper import TEST_KEY_ENCRYPTION_KEY
from verifiers import advice
from verifiers.advice import policy_advice, settings_advice, signature_advice
from verifiers.base import Severity
from verifiers.content.rules import RULES, Rule

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "gatekeeper.example.toml"
PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwCZ55eIQW84WNys02Fqo3d5oy6w7\n"
    "5S9CoQr8YTBQMAW/pjAbP4UkQX0Nbk3pGb/jib1p7FQXHvnTqALXFFMggw==\n"
    "-----END PUBLIC KEY-----"
)


def policy(threshold: str = "high", mode: str = "enforce", *require: str) -> Policy:
    return Policy.model_validate(
        {
            "name": "p",
            "repositories": ["*"],
            "require": list(require) or ["hardening"],
            "severity_threshold": threshold,
            "mode": mode,
        }
    )


ENABLED = {"hardening": VerifierSettings(), "config-sanity": VerifierSettings()}


def test_the_example_settings_draw_no_warning() -> None:
    assert settings_advice(load_settings(EXAMPLE, env={})) == []


def test_a_required_verifier_below_the_threshold_is_named() -> None:
    assert policy_advice([policy("high")], ENABLED) == []
    (found,) = policy_advice([policy("critical")], ENABLED)
    assert found.key == "policies.p.require"
    assert "requires hardening, which cannot block anything" in found.message
    assert "at most high" in found.message and "blocks at critical" in found.message


def test_the_issue_16_catalogue_would_have_been_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every hardening rule medium under the default threshold: the verifier runs, reports,
    and never blocks. That is what the warning is for."""
    for rule_id, rule in list(RULES.items()):
        if rule_id.startswith("hardening."):
            monkeypatch.setitem(RULES, rule_id, Rule(Severity.MEDIUM, rule.title))
    (found,) = policy_advice([policy("high")], ENABLED)
    assert "at most medium" in found.message


def test_a_required_verifier_that_is_not_enabled_is_named() -> None:
    (found,) = policy_advice([policy("high", "enforce", "secrets")], ENABLED)
    assert "requires secrets, which is not enabled" in found.message
    disabled = {"secrets": VerifierSettings(enabled=False)}
    assert len(policy_advice([policy("high", "enforce", "secrets")], disabled)) == 1


def test_warn_policies_and_plugins_draw_no_warning() -> None:
    assert policy_advice([policy("critical", "warn")], ENABLED) == []
    plugin = {"hardening": VerifierSettings(plugin="tests.fakes.verifiers:Slow")}
    assert policy_advice([policy("critical")], plugin) == []


def test_malware_with_only_yara_rules_reaches_high() -> None:
    yara = {"malware": VerifierSettings(options={"yara_rules": "/r.yar"})}
    denylist = {"malware": VerifierSettings(options={"denylist": "/d.sha256"})}
    assert policy_advice([policy("critical", "enforce", "malware")], denylist) == []
    (found,) = policy_advice([policy("critical", "enforce", "malware")], yara)
    assert "at most high" in found.message
    assert advice.ceiling("malware", yara["malware"]) is Severity.HIGH


def signatures(*rules: dict[str, Any]) -> dict[str, VerifierSettings]:
    options = {
        "signers": [
            {"name": "release-bot", "key": PEM},
            {"name": "ci", "identity": "me@example.com", "issuer": "https://accounts.example"},
        ],
        "rules": list(rules),
    }
    return {"signatures": VerifierSettings(options=options)}


def test_key_signers_that_need_a_log_proof_are_named() -> None:
    keyed = {"name": "prod", "repositories": ["prod/*"], "signers": ["release-bot", "ci"]}
    (found,) = signature_advice(signatures(keyed))
    assert found.key == "verifiers.signatures.options.rules.prod"
    assert "(release-bot)" in found.message and "--tlog-upload=false" in found.message
    assert signature_advice(signatures({**keyed, "require_tlog": False})) == []
    keyless = {"name": "ci", "repositories": ["ci/*"], "signers": ["ci"]}
    exempt = {"name": "all", "repositories": ["*"], "signed": False}
    assert signature_advice(signatures(keyless, exempt)) == []


def test_check_config_warns_on_stderr_and_strict_fails(tmp_path: Path) -> None:
    settings = tmp_path / "gatekeeper.toml"
    settings.write_text(
        "[verifiers.hardening]\n"
        '[[policies]]\nname = "strict"\nrepositories = ["*"]\n'
        'require = ["hardening"]\nseverity_threshold = "critical"\n'
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}

    def check(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxy", "check-config", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = check(str(settings))
    assert done.returncode == 0, done.stderr
    assert f"{settings}: OK" in done.stdout
    assert "warning: policies.strict.require: policy strict requires hardening" in done.stderr
    assert check("--strict", "--config", str(settings)).returncode == 1
    by_variable = check("--strict", GATEKEEPER_CONFIG=str(settings))
    assert by_variable.returncode == 1 and f"{settings}: OK" in by_variable.stdout
    assert check("--strict", str(EXAMPLE)).returncode == 0


def test_serve_logs_the_warnings_at_start_up(tmp_path: Path) -> None:
    """Logged before anything starts (here the port is taken, so the start then fails)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        policies = [dict(policy("critical").model_dump(mode="json"), name="strict")]
        done = subprocess.run(
            [sys.executable, "-m", "proxy", "serve"],
            env={
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": str(ROOT),
                "GATEKEEPER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gk.db'}",
                "GATEKEEPER_LISTEN": f"127.0.0.1:{held.getsockname()[1]}",
                "GATEKEEPER_VERIFIERS": json.dumps({"hardening": {}}),
                "GATEKEEPER_POLICIES": json.dumps(policies),
                "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": TEST_KEY_ENCRYPTION_KEY,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "WARNING gatekeeper settings: policies.strict.require" in done.stderr, done.stderr
