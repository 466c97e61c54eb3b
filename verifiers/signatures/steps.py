"""Numbered verification steps, recorded as they run, and the result of checking one signature.

Every check is a named step. A step that fails raises :class:`StepFailed` inside
``with trail.step(...)``; the trail records it (number, name, what was found) and the check
stops there, unless the step is only logged (``trail.step(name, enforce=False)``: a Notation
verification level that logs a validation instead of enforcing it); then the failure is kept
beside the trail and the check goes on. ``gatekeeper verify`` prints the trail; the verifier
turns a failed step into a finding whose title names the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from verifiers.signatures.errors import StepFailed


@dataclass(frozen=True)
class Step:
    """One step of checking one signature."""

    number: int
    name: str
    """What the step establishes, e.g. "the payload names this image's digest"."""
    ok: bool
    detail: str = ""
    logged: bool = False
    """Failed, but not enforced: the check went on."""


@dataclass(frozen=True)
class Failure:
    """The step that failed, as a finding would state it."""

    rule: str
    """``signature.*`` rule id."""
    step: str
    detail: str


@dataclass(frozen=True)
class Checked:
    """What verifying one signature showed."""

    source: str
    """Where it was found: ``cosign tag sha256-….sig, layer 1`` or ``referrer sha256:…``."""
    steps: tuple[Step, ...]
    signer: str | None
    """The trusted signer it verified as; None when it does not count."""
    failure: Failure | None = None
    logged: tuple[Failure, ...] = ()
    """Failed steps that the verification level only logs."""


@dataclass
class Note:
    """What a passing step wants to say (``with trail.step(...) as note: note.detail = ...``)."""

    detail: str = ""


@dataclass
class Trail:
    """Collects the steps of one signature check."""

    source: str
    steps: list[Step] = field(default_factory=list)
    failure: Failure | None = None
    logged: list[Failure] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, *, enforce: bool = True) -> Iterator[Note]:
        note = Note()
        number = len(self.steps) + 1
        try:
            yield note
        except StepFailed as exc:
            self.steps.append(Step(number, name, False, exc.detail, logged=not enforce))
            if enforce:
                self.failure = Failure(exc.rule, name, exc.detail)
                raise
            self.logged.append(Failure(exc.rule, name, exc.detail))
            return
        self.steps.append(Step(number, name, True, note.detail))

    def result(self, signer: str | None) -> Checked:
        return Checked(
            self.source,
            tuple(self.steps),
            signer if not self.failure else None,
            self.failure,
            tuple(self.logged),
        )


async def run_trail(source: str, check: Callable[[Trail], Awaitable[str]]) -> Checked:
    """Run ``check`` (which returns the signer) on a fresh trail; a failed step ends it.

    One place for "a failed step is a result, not an error", shared by every signature kind.
    """
    trail = Trail(source)
    signer: str | None = None
    with contextlib.suppress(StepFailed):
        signer = await check(trail)
    return trail.result(signer)
