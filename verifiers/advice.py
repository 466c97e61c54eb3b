"""Settings that are valid but do not do what they seem to: warnings for ``check-config``, the
start-up log and ``gatekeeper doctor``.

Two kinds, both found in the settings alone (nothing is read from the database or a registry):

- a policy requires a verifier that **cannot block anything** under it: the verifier is not
  enabled (every image is then quarantined, "did not run"), or every finding it can make is
  below the policy's ``severity_threshold`` (it runs, reports, and never blocks);
- a signature rule with **key-based signers requires a transparency log** (``require_tlog``,
  true by default): a signature made offline (``cosign sign --key ... --tlog-upload=false``)
  then never counts, which looks like a broken key.

How high a built-in verifier's findings can go comes from its rule catalogue
(``verifiers.content.rules``, ``verifiers.scan.rules``); a plugin's is unknown, so it gets no
warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config.policy import Policy
from config.settings import Settings, VerifierSettings
from verifiers.base import Severity
from verifiers.content.rules import RULES as CONTENT_RULES
from verifiers.scan.rules import RULES as LAYER_RULES


@dataclass(frozen=True)
class Advice:
    """One warning about the settings."""

    key: str
    """Where in the settings (``policies.default``, ``verifiers.signatures.options.rules.prod``)."""
    message: str
    """What will happen, and what to change; one paragraph for a person."""


def _highest(prefix: str) -> Severity:
    """The highest severity of the content rules whose ids start with ``prefix``."""
    return max(rule.severity for key, rule in CONTENT_RULES.items() if key.startswith(prefix))


_LAYERS = max(rule.severity for rule in LAYER_RULES.values())
"""The inventory's findings: a layer it cannot read (corrupt, a bomb, hostile entries). The
content checks report only their own rules."""


def ceiling(name: str, configured: VerifierSettings) -> Severity | None:
    """The highest severity verifier ``name`` can report with these settings; None when that
    cannot be known (a plugin, an unknown name)."""
    if configured.plugin:
        return None
    options = configured.options
    if name == "malware":
        return Severity.CRITICAL if options.get("denylist") else _highest("malware.yara:")
    return {
        "config-sanity": Severity.HIGH,  # every structural check of verifiers/config_sanity.py
        "inventory": _LAYERS,
        "hardening": _highest("hardening."),
        "secrets": _highest("secret."),
        "vulnerabilities": Severity.CRITICAL,  # an advisory's CVSS score
        "signatures": Severity.CRITICAL,  # no trusted signature
    }.get(name)


def policy_advice(
    policies: Sequence[Policy], verifiers: Mapping[str, VerifierSettings]
) -> list[Advice]:
    """Each required verifier that cannot block anything under the policy requiring it.
    A ``warn`` policy blocks nothing on purpose, so it gets no warning."""
    found: list[Advice] = []
    for policy in policies:
        if policy.deny_all or policy.mode == "warn":
            continue
        threshold = Severity.parse(policy.severity_threshold)
        for name in policy.require:
            configured = verifiers.get(name)
            key = f"policies.{policy.name}.require"
            if configured is None or not configured.enabled:
                found.append(
                    Advice(
                        key,
                        f"policy {policy.name} requires {name}, which is not enabled: every "
                        f"image it covers is quarantined ('required verifier {name} did not "
                        f"run'); add [verifiers.{name}] or remove it from require",
                    )
                )
                continue
            top = ceiling(name, configured)
            if top is not None and top < threshold:
                found.append(
                    Advice(
                        key,
                        f"policy {policy.name} requires {name}, which cannot block anything "
                        f"there: its findings are at most {top.name.lower()} and the policy "
                        f"blocks at {policy.severity_threshold}; lower severity_threshold to "
                        f"{top.name.lower()} if its findings should quarantine",
                    )
                )
    return found


def signature_advice(verifiers: Mapping[str, VerifierSettings]) -> list[Advice]:
    """Signature rules whose key-based signers need a transparency-log proof."""
    configured = verifiers.get("signatures")
    if configured is None or not configured.enabled or configured.plugin:
        return []
    # Imported here: the signature package pulls in the sigstore stack.
    from pydantic import ValidationError

    from verifiers.signatures.settings import SignatureSettings

    try:
        options = SignatureSettings.model_validate(configured.options)
    except ValidationError:
        return []  # start-up refuses these options, naming the field
    keyed = {s.name for s in options.signers if s.key is not None or s.key_file is not None}
    return [
        Advice(
            f"verifiers.signatures.options.rules.{rule.name}",
            f"signature rule {rule.name} requires a transparency-log proof (require_tlog, "
            f"true by default) of its key signers ({', '.join(sorted(signers))}): a signature "
            "made offline (cosign sign --key ... --tlog-upload=false) does not count there; "
            "set require_tlog = false in the rule if you sign without Rekor",
        )
        for rule in options.rules
        if rule.signed and rule.require_tlog and (signers := keyed & set(rule.signers))
    ]


def settings_advice(settings: Settings) -> list[Advice]:
    """Every warning about ``settings``."""
    return [
        *policy_advice(settings.policies, settings.verifiers),
        *signature_advice(settings.verifiers),
    ]
