"""The catalogue of content-check rules: one stable id per kind of finding, with its severity.

One place, as for layer problems (``verifiers.scan.rules``): policies and waivers name these
ids, and a scanner cannot invent a severity ad hoc. ``malware.yara:<rule>`` takes the YARA
rule's own name after the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifiers.base import Severity


@dataclass(frozen=True)
class Rule:
    """A kind of content finding."""

    severity: Severity
    title: str


YARA_PREFIX = "malware.yara:"

RULES: dict[str, Rule] = {
    # secrets: cloud and signing keys can be used as they are, hence CRITICAL or HIGH
    "secret.private-key": Rule(Severity.HIGH, "private key in a layer"),
    "secret.aws-access-key": Rule(Severity.CRITICAL, "AWS access key in a layer"),
    "secret.gcp-service-account": Rule(Severity.CRITICAL, "GCP service-account key in a layer"),
    "secret.github-token": Rule(Severity.HIGH, "GitHub token in a layer"),
    "secret.gitlab-token": Rule(Severity.HIGH, "GitLab token in a layer"),
    "secret.slack-token": Rule(Severity.HIGH, "Slack token or webhook in a layer"),
    "secret.registry-credentials": Rule(
        Severity.HIGH, "package or container registry credentials in a layer"
    ),
    "secret.generic-high-entropy": Rule(
        Severity.MEDIUM, "high-entropy value assigned to a secret-like name in a config file"
    ),
    "secret.env": Rule(Severity.HIGH, "secret in the image config's environment"),
    # what a check could not look at is not clean: HIGH, so the default threshold blocks it
    "secret.not-inspected": Rule(Severity.HIGH, "files in a layer not searched for secrets"),
    # malware
    "malware.denylisted-hash": Rule(Severity.CRITICAL, "file whose SHA-256 is denylisted"),
    YARA_PREFIX: Rule(Severity.HIGH, "file matches a YARA rule"),
    "malware.not-inspected": Rule(Severity.HIGH, "files in a layer not checked for malware"),
    # hardened configuration: HIGH for what hands an attacker a way in or up (a login service
    # listening in the container, a setuid program nobody vetted); MEDIUM for what is common
    # and only risky in combination (most base images run as root, and the runtime can
    # override the user; a world-writable path); LOW for setgid (group rights only). So the
    # default threshold (high) blocks sshd and unexpected setuid programs and reports the rest.
    "hardening.runs-as-root": Rule(Severity.MEDIUM, "image runs as root"),
    "hardening.ssh-server": Rule(Severity.HIGH, "image contains an SSH server"),
    "hardening.setuid": Rule(Severity.HIGH, "setuid file outside the allowlist"),
    "hardening.setgid": Rule(Severity.LOW, "setgid file outside the allowlist"),
    "hardening.world-writable": Rule(
        Severity.MEDIUM, "world-writable file or directory outside temporary directories"
    ),
    "hardening.not-inspected": Rule(
        Severity.HIGH, "entries in a layer whose modes were not checked"
    ),
}


def rule_for(rule_id: str) -> Rule:
    """The catalogue entry of ``rule_id`` (every ``malware.yara:*`` id shares one)."""
    if rule_id.startswith(YARA_PREFIX):
        return RULES[YARA_PREFIX]
    return RULES[rule_id]
