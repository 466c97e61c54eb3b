"""From VEX statements to waivers: what the policy ends up accepting in one repository.

Each statement says, for each product it names, one of four things about a vulnerability. The
latest word on a (vulnerability, product) pair is the one that counts, across every document
in force in the repository: a later ``affected`` or ``under_investigation`` takes back an
earlier ``not_affected``, as OpenVEX intends. What remains ``not_affected`` or ``fixed``
becomes a :class:`config.policy.Waiver` limited to the product (an image digest, a package
purl, or a package within an image), in the repository, with the document's author,
time and justification as its reason, and expiring ``expire_after`` the statement's time when
the policy sets that.

A document attached to an image (a referrer) speaks only for that image: a product naming
another digest is dropped, and a package it names is a package within that image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from config.policy import Waiver
from verifiers.vex.match import Target, name_target
from verifiers.vex.model import Component, Document, Statement


@dataclass(frozen=True)
class Source:
    """One document in force, where it applies, and what the gatekeeper calls it."""

    document: Document
    label: str
    """How reasons name it: ``VEX 3`` (stored), ``VEX file vex/app.json`` (settings)."""
    subject: str | None = None
    """The image a referrer is attached to; None for documents not attached to one."""


@dataclass(frozen=True)
class Claim:
    """One statement about one vulnerability in one target."""

    source: Source
    statement: Statement
    target: Target
    time: datetime
    order: int
    """Position among all claims (a tie in time goes to the later one)."""

    @property
    def key(self) -> tuple[str, Target]:
        return (self.statement.vulnerability.name, self.target)


def targets(product: Component, subject: str | None) -> list[Target]:
    """What one product names (see the module docstring), within ``subject`` if set."""
    top = next((t for t in map(name_target, product.names) if t is not None), None)
    if top is None:
        return []
    found = [top]
    if top.digest and product.subcomponents:
        found = []
        for sub in product.subcomponents:
            named = next((t for t in map(name_target, sub.names) if t is not None), None)
            if named is not None and named.package:
                found.append(Target(top.digest, named.package))
    if subject is None:
        return found
    return [Target(subject, t.package) for t in found if t.digest in (None, subject)]


def claims(sources: Iterable[Source]) -> list[Claim]:
    found: list[Claim] = []
    for source in sources:
        doc = source.document
        for statement in doc.statements:
            for product in statement.products:
                for target in targets(product, source.subject):
                    found.append(
                        Claim(source, statement, target, doc.time_of(statement), len(found))
                    )
    return found


def latest(found: Sequence[Claim]) -> list[Claim]:
    """The last word on each (vulnerability, target), in the order first seen."""
    best: dict[tuple[str, Target], Claim] = {}
    for claim in found:
        current = best.get(claim.key)
        if current is None or (claim.time, claim.order) >= (current.time, current.order):
            best[claim.key] = claim
    return list(best.values())


def reason(claim: Claim) -> str:
    statement = claim.statement
    why = statement.justification.value if statement.justification else ""
    if statement.impact_statement:
        why = f"{why}: {statement.impact_statement}" if why else statement.impact_statement
    said = f"{statement.status.value}" + (f" ({why})" if why else "")
    return (
        f"{claim.source.label} by {claim.source.document.author}, "
        f"{claim.time:%Y-%m-%dT%H:%M:%SZ}: {said}"
    )[:2000]


def waivers(
    sources: Iterable[Source],
    repository: str,
    *,
    expire_after: timedelta | None,
    now: datetime,
) -> list[Waiver]:
    """The waivers the documents in force in ``repository`` make (unexpired at ``now``)."""
    made: list[Waiver] = []
    for claim in latest(claims(sources)):
        if not claim.statement.status.waives:
            continue
        expires = claim.time + expire_after if expire_after is not None else None
        if expires is not None and expires <= now:
            continue
        vulnerability = claim.statement.vulnerability
        for finding in dict.fromkeys([vulnerability.name, *vulnerability.aliases]):
            made.append(
                Waiver(
                    finding=finding,
                    repositories=[repository],
                    digests=[claim.target.digest] if claim.target.digest else [],
                    packages=[claim.target.package] if claim.target.package else [],
                    reason=reason(claim),
                    author=claim.source.document.author,
                    expires=expires,
                )
            )
    return made
