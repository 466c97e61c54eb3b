"""What can go wrong while checking signatures, each with a diagnosis a person can act on.

Two kinds, deliberately apart: :class:`SignatureConfigError` is the operator's (bad trust
settings, found at start-up, naming the field), :class:`StepFailed` is the image's (one
verification step did not hold; it becomes a finding, never an exception out of the verifier).
"""

from __future__ import annotations

from verifiers.base import VerifierError


class SignatureError(VerifierError):
    """Base of the errors raised while checking signatures."""


class SignatureConfigError(SignatureError, ValueError):
    """The ``signatures`` verifier's options are unusable; each line names the bad field."""


class StepFailed(SignatureError):
    """One verification step failed. ``rule`` is the finding's rule id (``signature.*``),
    ``detail`` says what was found instead of what was expected."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail
