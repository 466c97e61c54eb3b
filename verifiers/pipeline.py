"""Run verifiers concurrently, each under its own timeout, and record what each did.

Every verifier that applies yields exactly one :class:`Outcome`; an exception or a timeout
becomes an ``error`` outcome with the reason, never a missing result and never "no findings".
An image that could not be read (``SourceUnavailable``) is an ``error`` marked ``unavailable``,
which the verification service retries instead of deciding on.
Which verifiers apply is decided here, once: those the image's policy requires (an enabled
verifier no policy of the repository asks for does not run, and leaves no outcome at all, not a
"skipped" one: nobody would read it, and its findings would count where nobody asked for
them); of those, all to an image, to an index only those that check indexes themselves
(``checks_indexes``: signatures over the index digest); an index's other checks are its
platform images' own. A required verifier always runs: a skip is not a pass, so leaving one
out would be a decision the policy did not make.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from verifiers.base import (
    Finding,
    Image,
    Noted,
    Skipped,
    SourceUnavailable,
    Verifier,
    Versioned,
)

log = logging.getLogger("gatekeeper.verifiers")

OutcomeStatus = Literal["ok", "skipped", "error"]


@dataclass(frozen=True)
class Outcome:
    """What one verifier did with one image."""

    verifier: str
    version: str
    status: OutcomeStatus
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    detail: str = ""
    """Why it skipped or failed; empty when ok."""
    duration_ms: float = 0.0
    exempt: bool = False
    """A skip that the verifier's own settings grant (``Skipped.exempt``): counts as passed."""
    unavailable: bool = False
    """An ``error`` because the image could not be read (``SourceUnavailable``), not because
    of anything about it: the verification is retried rather than decided on it."""


async def run_one(verifier: Verifier, image: Image, timeout: float) -> Outcome:
    started = time.perf_counter()

    def done(
        status: OutcomeStatus,
        findings: Sequence[Finding] = (),
        detail: str = "",
        version: str | None = None,
        exempt: bool = False,
        unavailable: bool = False,
    ) -> Outcome:
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        used = version if version is not None else verifier.version
        return Outcome(
            verifier.name, used, status, tuple(findings), detail, elapsed, exempt, unavailable
        )

    try:
        result = await asyncio.wait_for(verifier.verify(image), timeout)
    except TimeoutError:
        log.warning("verifier %s timed out after %ss on %s", verifier.name, timeout, image.digest)
        return done("error", detail=f"timed out after {timeout:g}s")
    except asyncio.CancelledError:
        raise
    except SourceUnavailable as exc:
        log.warning("verifier %s could not read %s: %s", verifier.name, image.digest, exc)
        return done("error", detail=f"could not read the image: {exc}"[:500], unavailable=True)
    except Exception as exc:
        log.exception("verifier %s crashed on %s@%s", verifier.name, image.repository, image.digest)
        return done("error", detail=f"crashed: {exc.__class__.__name__}: {exc}"[:500])
    if isinstance(result, Skipped):
        return done("skipped", detail=result.reason, exempt=result.exempt)
    if isinstance(result, Versioned):
        return done("ok", result.findings, version=result.version)
    if isinstance(result, Noted):
        return done("ok", result, detail=result.note[:500])
    return done("ok", result)


def applies(verifier: Verifier, image: Image, required: Collection[str]) -> bool:
    """Whether ``verifier`` checks ``image`` under a policy requiring ``required``: only a
    required verifier runs; it checks every image, and an index only if it declares
    ``checks_indexes``."""
    if verifier.name not in required:
        return False
    return not image.is_index or bool(getattr(verifier, "checks_indexes", False))


def with_needs(verifiers: Sequence[Verifier], required: Collection[str]) -> frozenset[str]:
    """``required`` and what those verifiers need to have run beside them (``needs``): the
    ``vulnerabilities`` check matches the package inventory, which only the ``inventory``
    verifier stores, for advisory imports to re-match later and for ``gatekeeper sbom``."""
    wanted = set(required)
    for verifier in verifiers:
        if verifier.name in required:
            wanted.update(getattr(verifier, "needs", ()))
    return frozenset(wanted)


async def run_pipeline(
    image: Image,
    verifiers: Sequence[Verifier],
    timeouts: Mapping[str, float],
    default: float,
    *,
    required: Collection[str],
) -> list[Outcome]:
    """The verifiers that apply (:func:`applies`) to what ``required`` names and needs
    (:func:`with_needs`), all at once; outcomes in the order the verifiers were given."""
    running = with_needs(verifiers, required)
    chosen = [v for v in verifiers if applies(v, image, running)]
    return list(
        await asyncio.gather(*(run_one(v, image, timeouts.get(v.name, default)) for v in chosen))
    )
