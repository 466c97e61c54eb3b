"""What the admin API answers about policies, waivers and VEX documents (see
``proxy.admin.models``, whose conventions these follow).

A listed waiver or VEX document comes from the database or from the settings file, and the two
carry different fields; each is its own model, told apart by ``source``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from config.policy import Policy
from proxy.admin.models import Out, Time
from storage.waivers import Status
from verifiers.lifecycle import State


class PolicyChange(Out):
    repository: str
    digest: str
    current: State
    would_be: State
    policy: str
    reasons: list[str]


class PolicyTestResult(Out):
    source: Literal["request", "settings"]
    """Whose policies were tried: the request's, or the configured ones."""
    examined: int
    skipped_pending: int
    skipped_unreadable: int
    changes: list[PolicyChange]


class Reevaluation(Out):
    """The verdicts decided again from stored findings (no layer read)."""

    reevaluated: int
    """Verdicts decided under another policy version, decided again."""
    changed: int
    quarantined: int
    """Newly quarantined."""
    notified: int
    """Still pullable with new blocking findings (``image.new-findings``)."""
    skipped_unreadable: int
    queued: int
    """Full verifications queued: the policy now requires a verifier with no stored result
    (decided as failed meanwhile)."""
    seconds: float


class PolicyReevaluateResult(Reevaluation):
    repository: str | None
    """The repository asked for; null: every verdict."""


class EffectivePolicy(Out):
    """The policy in force for one repository's images from one origin."""

    repository: str
    origin: str
    policy: Policy
    version: str


class PolicyList(Out):
    """The settings file's policies."""

    policies: list[Policy]


class StoredWaiverOut(Out):
    """A waiver made over this API."""

    source: Literal["database"]
    id: int
    finding: str
    scope: str
    reason: str
    author: str
    created_at: Time | None
    expires_at: Time | None
    status: Status
    withdrawn_at: Time | None
    withdrawn_by: str | None
    withdraw_reason: str | None


class SettingsWaiverOut(Out):
    """A waiver in a policy of the settings file."""

    source: Literal["settings"]
    policy: str
    finding: str
    scope: str
    """The repository patterns it applies in, joined with ``, ``."""
    reason: str
    author: str
    expires_at: Time | None
    status: Status


ListedWaiver = Annotated[StoredWaiverOut | SettingsWaiverOut, Field(discriminator="source")]


class Waivers(Out):
    waivers: list[ListedWaiver]


class WaiverChange(Out):
    waiver: StoredWaiverOut
    reevaluation: Reevaluation


OPENVEX = (
    "An OpenVEX document (https://github.com/openvex/spec, v0.2.0 or v0.0.x): `@context`, "
    "`@id`, `author`, `timestamp` and `statements`, each with a `vulnerability`, `products` "
    "(image digests `sha256:...`, `pkg:oci/...@sha256:...`, or package purls), a `status` "
    "and, for `not_affected`, a `justification` or `impact_statement`."
)


class StoredVexOut(Out):
    """A VEX document stored: added over this API (``admin``), or a signed referrer of
    ``subject`` believed because a key its policy trusts signed it (``referrer``)."""

    source: Literal["admin", "referrer"]
    id: int
    scope: str
    subject: str | None
    referrer: str | None
    signer: str | None
    author: str
    added_by: str
    created_at: Time | None
    status: Literal["active", "withdrawn"]
    withdrawn_at: Time | None
    withdrawn_by: str | None
    withdraw_reason: str | None
    document: dict[str, Any] = Field(description=OPENVEX)


class SettingsVexOut(Out):
    """A VEX file a policy of the settings file names."""

    source: Literal["settings"]
    policy: str
    file: str
    scope: str
    author: str
    status: Literal["active"]
    document: dict[str, Any] = Field(description=OPENVEX)


ListedVex = Annotated[StoredVexOut | SettingsVexOut, Field(discriminator="source")]


class VexList(Out):
    vex: list[ListedVex]


class VexChange(Out):
    vex: StoredVexOut
    reevaluation: Reevaluation
