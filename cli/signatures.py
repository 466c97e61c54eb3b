"""``gatekeeper keys`` and ``gatekeeper verify``: what signatures the gatekeeper trusts, and why
one image passes or fails, step by step.

Both read the same settings as ``gatekeeper serve`` (file and environment), so they show what
the running gatekeeper does. ``verify`` fetches the image from the upstream and runs the
``signatures`` verifier once; it prints every numbered step and records no verdict (an admin
``quarantine rescan`` does that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cli.config import add_config, settings_for
from config.settings import Settings
from config.text import visible
from verifiers.base import Skipped

if TYPE_CHECKING:  # imported when a command runs: `gatekeeper serve` must not load sigstore
    from verifiers.signatures.policy import Rule
    from verifiers.signatures.steps import Checked
    from verifiers.signatures.verifier import Report, SignatureVerifier

NAME = "signatures"

OK, FAIL, LOGGED = "ok  ", "FAIL", "log "
"""A ``log`` step failed, but its Notation verification level only logs that validation."""


class NotConfigured(Exception):
    """The ``signatures`` verifier is not enabled in these settings."""


def _verifier(settings: Settings) -> SignatureVerifier:
    configured = settings.verifiers.get(NAME)
    if configured is None or not configured.enabled or configured.plugin:
        raise NotConfigured(
            f"the {NAME} verifier is not enabled: add [verifiers.{NAME}.options] to the settings"
        )
    from config.public_names import public_hosts
    from verifiers.registry_names import RegistryNames
    from verifiers.signatures.verifier import SignatureVerifier

    verifier = SignatureVerifier(dict(configured.options))
    verifier.know_registry(RegistryNames.of(public_hosts(settings)))
    return verifier


# -- keys ------------------------------------------------------------------------------------


def _rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "repositories": list(rule.patterns),
        "signed": rule.signed,
        "threshold": rule.threshold,
        "required": list(rule.required),
        "require_tlog": rule.require_tlog,
        "references": list(rule.references),
        "signature_repository": rule.signature_repository,
        "signers": [
            {
                "name": s.name,
                "kind": s.kind,
                "key_id": s.key.key_id if s.key else None,
                "describe": s.describe(),
            }
            for s in rule.signers
        ],
    }


def _print_rule(rule: Rule) -> None:
    print(visible(f"{rule.describe()}  [{', '.join(rule.patterns)}]"))
    for signer in rule.signers:
        marker = "required" if signer.name in rule.required else ""
        print(visible(f"  {signer.name:<20} {signer.describe()}  {marker}".rstrip()))
    for pattern in rule.references:
        print(f"  also accepts docker-reference {visible(pattern)}")


def cmd_keys(args: argparse.Namespace) -> int:
    verifier = _verifier(_load(args))
    policy = verifier.policy
    if args.repository:
        rule = policy.rule_for(args.repository)
        if rule is None:
            print(
                f"{visible(args.repository)}: no signature rule matches; every image is quarantined"
            )
            return 1
        rules = [rule]
    else:
        rules = list(policy.rules)
    if args.json:
        print(
            json.dumps(
                {
                    "trusted_root": policy.trust_root.source,
                    "registry_names": sorted(verifier.registry.hosts),
                    "rules": [_rule_json(r) for r in rules],
                },
                indent=2,
            )
        )
        return 0
    print(f"trusted root: {visible(policy.trust_root.source)}")
    print(f"registry names: {visible(verifier.registry.describe())}")
    for rule in rules:
        _print_rule(rule)
    return 0


# -- verify ----------------------------------------------------------------------------------


def _print_checked(index: int, checked: Checked) -> None:
    """Sources and step details quote the signature (its docker-reference, the certificate's
    identity): attacker-written text, shown through ``visible``."""
    print(f"signature {index}: {visible(checked.source)}")
    for step in checked.steps:
        detail = f" — {visible(step.detail)}" if step.detail else ""
        mark = OK if step.ok else LOGGED if step.logged else FAIL
        print(f"  {step.number:>2}. {mark}  {step.name}{detail}")
    if checked.signer:
        print(f"      => counts as {visible(checked.signer)}")
    else:
        print("      => does not count")


def _print_report(report: Report) -> None:
    print(visible(f"{report.repository}@{report.digest}"))
    if report.rule is not None:
        print(f"  {visible(report.rule.describe())}")
    for note in report.notes:
        print(f"  {visible(note)}")
    for index, checked in enumerate(report.checked, 1):
        _print_checked(index, checked)
    signed = ", ".join(sorted(report.signed_by)) or "nobody trusted"
    print(f"signed by: {visible(signed)}")
    for rule_id, title in report.failures:
        print(f"{FAIL}  {rule_id}: {visible(title)}")
    print("result: " + ("PASSED" if report.passed else "QUARANTINED"))


def _report_json(report: Report) -> dict[str, Any]:
    return {
        "repository": report.repository,
        "digest": report.digest,
        "rule": report.rule.name if report.rule else None,
        "passed": report.passed,
        "signed_by": sorted(report.signed_by),
        "failures": [{"rule_id": r, "title": t} for r, t in report.failures],
        "notes": list(report.notes),
        "signatures": [
            {
                "source": c.source,
                "signer": c.signer,
                "steps": [
                    {
                        "number": s.number,
                        "name": s.name,
                        "ok": s.ok,
                        "logged": s.logged,
                        "detail": s.detail,
                    }
                    for s in c.steps
                ],
            }
            for c in report.checked
        ],
    }


def cmd_verify(args: argparse.Namespace) -> int:
    repository, sep, digest = args.image.partition("@")
    if not sep or not digest.startswith("sha256:"):
        print("gatekeeper verify: give the image as REPOSITORY@sha256:<hex>", file=sys.stderr)
        return 2
    settings = _load(args)
    verifier = _verifier(settings)
    try:
        result = asyncio.run(_examine(settings, verifier, repository, digest))
    except LookupError as exc:
        print(f"gatekeeper verify: {visible(exc)}", file=sys.stderr)
        return 1
    if isinstance(result, Skipped):
        skipped = result.reason
        print(json.dumps({"skipped": skipped}) if args.json else f"skipped: {visible(skipped)}")
        return 0
    if args.json:
        print(json.dumps(_report_json(result), indent=2))
    else:
        _print_report(result)
    return 0 if result.passed else 1


async def _examine(
    settings: Settings, verifier: SignatureVerifier, repository: str, digest: str
) -> Report | Skipped:
    from proxy.standalone import verification_service
    from services.verification import ImageGone

    async with verification_service(settings, lambda _db: [verifier]) as service:
        try:
            image = await service.load_image(repository, digest)
        except ImageGone as exc:
            raise LookupError(f"{repository}@{digest} is not in the upstream registry") from exc
        return await verifier.examine(image)


def _load(args: argparse.Namespace) -> Settings:
    return settings_for(args)


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except NotConfigured as exc:
            print(f"gatekeeper {args.command}: {visible(exc)}", file=sys.stderr)
            return 2
        except ValueError as exc:  # the verifier's options (messages name the field)
            lines = str(exc).splitlines()
            print("gatekeeper: configuration error:", file=sys.stderr)
            for line in lines:
                print(f"verifiers.{NAME}.options.{visible(line)}", file=sys.stderr)
            return 2

    return run


def _keys_or_own(
    signers: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """``keys`` shows whom the gatekeeper trusts; ``keys --gatekeeper`` whom others should
    (``cli/audit_chain.py``)."""

    def run(args: argparse.Namespace) -> int:
        if args.gatekeeper:
            from cli.audit_chain import cmd_keys as own_keys

            return int(own_keys(args))
        return signers(args)

    return run


def add_signature_commands(sub: Any) -> None:
    """Register ``keys`` and ``verify`` on the main parser's subcommands."""
    keys = sub.add_parser("keys", help="show the signers trusted for a repository (or all rules)")
    add_config(keys)
    keys.add_argument("--repository", "-r", help="show only the rule that applies to it")
    keys.add_argument("--json", action="store_true")
    keys.add_argument(
        "--gatekeeper",
        action="store_true",
        help="instead: the gatekeeper's own public key (its summaries and audit checkpoints "
        "verify with it), as PEM, or with --json as /keys/gatekeeper.json serves it",
    )
    keys.set_defaults(func=_keys_or_own(_run(cmd_keys)))

    verify = sub.add_parser(
        "verify", help="check one image's signatures now, printing each step (no verdict stored)"
    )
    verify.add_argument("image", help="REPOSITORY@sha256:<hex>")
    add_config(verify)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_run(cmd_verify))
