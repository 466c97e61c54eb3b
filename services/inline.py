"""Which first pulls the serving process verifies itself, and the manifest it verifies them from.

A first pull (an image pushed around the gatekeeper) waits for a verdict. Queued for a worker,
that costs a wake-up, a claim and a fetch of the manifest the serving handler already had. When
the repository's policy requires only verifiers that read no layer and no referrer (the
built-in ``config-sanity``: the manifest and one config of at most ``MAX_CONFIG_BYTES``), the
serving process runs the very job a worker would (``VerificationService.verify_inline``: the
same ``verify``, called in place), so the verdict cannot differ from the worker's.

The choice rests on the operator's policy for the repository and the verifiers installed, never
on anything a pusher wrote (labels, media types, the manifest's size): a verifier is light only
if its class says so (``reads_layers = False``), and a required verifier that is missing, or
that needs another that is not light, sends the image to the workers as before. The manifest
the handler holds is only a head start: it is checked against its digest and parsed again by
the verification itself, exactly as one fetched from the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from config.policy import Policy
from verifiers.base import Verifier
from verifiers.pipeline import with_needs


@dataclass(frozen=True)
class HeldManifest:
    """The manifest bytes a serving handler already read (from the registry or its storage)."""

    body: bytes
    content_type: str | None
    """What the registry says (or would say) it is: its ``Content-Type``."""


def light(verifier: Verifier) -> bool:
    """The verifier declares that it reads no layer and no referrer; undeclared is heavy."""
    return getattr(verifier, "reads_layers", True) is False


def verifies_inline(policy: Policy, verifiers: Sequence[Verifier]) -> bool:
    """Whether a first pull under ``policy`` is verified in the serving process: it enforces
    (a warn-mode pull never waits), and everything it requires, with what those need, is an
    installed light verifier. A policy requiring nothing runs only the content examination."""
    if policy.deny_all or policy.mode != "enforce":
        return False
    installed = {v.name: v for v in verifiers}
    running = with_needs(verifiers, policy.require)
    return all(name in installed and light(installed[name]) for name in running)
