"""What the admin API answers, one typed model per JSON shape.

Every JSON response of the API is built through one of these models (``proxy.admin.common.ok``
takes nothing else), and the OpenAPI document's schemas are generated from the same models
(``proxy.admin.openapi``), so what is documented is what is served. The models forbid unknown
fields, and a field's docstring is its description in the document.

Times are written as ``datetime.isoformat()`` (``+00:00``), as the API always has, not as
pydantic's ``Z``; numbers that may be whole (a stored duration) stay as they were stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from config.policy import Policy
from verifiers.lifecycle import State
from verifiers.pipeline import OutcomeStatus

Time = Annotated[
    datetime,
    PlainSerializer(lambda moment: moment.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]


class Out(BaseModel):
    """A response body: frozen, closed, read from objects' attributes as well as mappings, and
    every field required in the document (a field with a default is still always sent)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        from_attributes=True,
        use_attribute_docstrings=True,
        json_schema_serialization_defaults_required=True,
    )


class FieldError(Out):
    field: str
    """The field's path in the body (``policies.0.mode``), or ``(body)``."""
    message: str


class ErrorDetail(Out):
    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    code: str = Field(examples=["UNAUTHORIZED", "DIGEST_INVALID", "CONFLICT"])
    message: str
    details: list[FieldError] = Field(default_factory=list, exclude_if=lambda found: not found)
    """One entry per invalid field (422 only; absent otherwise)."""


class Error(Out):
    """Every error of the admin API: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class Verdict(Out):
    """An image's verdict as the gate acts on it."""

    repository: str
    digest: str
    state: State
    effective_state: State
    """``quarantined`` for a release past its expiry the sweeper has not rewritten yet; what
    the gate acts on."""
    pullable: bool
    reasons: list[str]
    policy: str | None
    """Policy that decided the verdict."""
    policy_version: str | None
    data_versions: dict[str, Any]
    released_by: str | None
    release_reason: str | None
    release_expires: Time | None
    decided_at: Time | None
    updated_at: Time
    trigger: str | None
    """What made the latest decision: null for a verification, ``advisory-import (data version
    N)`` or ``policy-change (policy P version V)`` for a re-evaluation from stored data."""
    held_by: str | None
    """The image whose admin hold on shared content keeps this one quarantined, if any."""
    origin: str
    """Where the image comes from, which chooses its policy: ``local`` (pushed here, or in a
    repository no remote serves) or the name of the remote the registry fetched it from."""


class Finding(Out):
    verifier: str
    rule_id: str
    severity: str = Field(examples=["info", "low", "medium", "high", "critical"])
    title: str
    location: str
    evidence: str
    fix: str | None
    """For a package finding: the first fixed version, empty when no fix is known; null when
    not applicable."""
    blob: str | None
    """The layer or config that carries it."""
    origin: str | None
    """``repository@digest`` of the image that found it, for a finding inherited through a
    shared blob; null for the image's own."""


def _absent(value: object) -> bool:
    return value is None


class Outcome(Out):
    """One verifier's outcome as stored with the verdict, echoed as stored: a key the stored
    outcome lacks is absent (never null), and one this model does not name is passed through."""

    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=False)

    verifier: str
    status: OutcomeStatus
    version: str | None = Field(default=None, exclude_if=_absent)
    detail: str | None = Field(default=None, exclude_if=_absent)
    findings: int | None = Field(default=None, exclude_if=_absent)
    """How many findings it reported."""
    duration_ms: Number | None = Field(default=None, exclude_if=_absent)
    exempt: bool | None = Field(default=None, exclude_if=_absent)
    """Present (true) when the policy exempts this verifier's failure."""
    kind: str | None = Field(default=None, exclude_if=_absent)
    """The kind of content examined (the content verifier's outcome only)."""


class HistoryEvent(Out):
    time: Time
    event: str = Field(examples=["pending", "quarantined", "released", "release-expired"])
    old_state: str | None
    new_state: State
    actor: str
    reason: str | None


class ImageDetail(Verdict):
    """A verdict with what it was decided from."""

    findings: list[Finding]
    outcomes: list[Outcome]
    history: list[HistoryEvent]
    """Oldest first."""
    applicable_policy: Policy
    """The policy that matches the repository now."""


class Images(Out):
    images: list[Verdict]


class ImageKey(Out):
    repository: str
    digest: str
    state: State


class RescanQueued(Out):
    """One image's rescan queued; its verdict as it stands until the new one lands."""

    queued: int
    images: list[ImageKey]


class RescanAllQueued(Out):
    queued: int
    """How many rescans were queued."""
    repository: str | None
    """The repository asked for; null: every image."""


class AccessRecord(Out):
    """One row of the access log."""

    time: Time
    request_id: str
    client_addr: str | None
    identity: str
    method: str
    path: str
    action: str = Field(examples=["manifest.pull", "admin.release"])
    repository: str | None
    reference: str | None
    digest: str | None
    status: int
    bytes_in: int
    bytes_out: int
    duration_ms: Number
    upstream_status: int | None
    decision: str | None
    reason: str | None
    error_code: str | None


class AccessRecords(Out):
    records: list[AccessRecord]


class Prefetched(Out):
    """What became of one image asked for."""

    reference: str
    """As asked (``library/alpine:3.20``)."""
    repository: str
    digest: str | None
    """The manifest's digest, once fetched."""
    origin: str | None
    """The remote it comes from, or ``local``."""
    queued: bool
    """A verification was queued (false: its verdict stood and ``again`` was not asked)."""
    state: str | None
    """Its verdict's state right after."""
    error: str | None
    """Why it could not be fetched; names the remote (down, rate limiting, no such image)."""


class PrefetchResult(Out):
    images: list[Prefetched]
