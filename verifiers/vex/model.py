"""OpenVEX documents (https://github.com/openvex/spec), parsed and validated.

No well-kept Python library reads OpenVEX, so this is a small pydantic model of the parts a
gate acts on: who wrote the document and when, and per statement the vulnerability (its name
and aliases), the products it is about, the status, and for ``not_affected`` the
justification or impact statement the spec requires. Both spellings in use are read: v0.2.0
(``vulnerability`` and ``products`` are objects) and the earlier v0.0.x (plain strings).

Everything is bounded (document size, nesting, statement and product counts, string lengths)
and every problem is a :class:`VexError` whose message names the field, so a malformed
document is refused whole with a reason a person can act on, never half-applied.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from config.text import check_plain
from oci import boundedjson

MAX_BYTES = 1024 * 1024
"""Largest document read (the settings file's, the admin API's, or a referrer's payload)."""
MAX_STATEMENTS = 10_000
MAX_PRODUCTS = 1_000
MAX_PAIRS = 10_000
"""(vulnerability, product) pairs in one document, subcomponents counted: each becomes a
waiver every decision in its scope walks."""
CONTEXT_PREFIX = "https://openvex.dev/ns"
SKEW = timedelta(days=1)
"""How far in the future a timestamp may lie: the latest statement wins, so one dated years
ahead could never be overridden (and would never lapse)."""


class VexError(ValueError):
    """A document that cannot be used, with the reason (which field, what is wrong)."""


class Status(enum.StrEnum):
    NOT_AFFECTED = "not_affected"
    AFFECTED = "affected"
    FIXED = "fixed"
    UNDER_INVESTIGATION = "under_investigation"

    @property
    def waives(self) -> bool:
        """The statuses that say the finding does not apply to the product."""
        return self in (Status.NOT_AFFECTED, Status.FIXED)


class Justification(enum.StrEnum):
    COMPONENT_NOT_PRESENT = "component_not_present"
    VULNERABLE_CODE_NOT_PRESENT = "vulnerable_code_not_present"
    VULNERABLE_CODE_NOT_IN_EXECUTE_PATH = "vulnerable_code_not_in_execute_path"
    VULNERABLE_CODE_CANNOT_BE_CONTROLLED_BY_ADVERSARY = (
        "vulnerable_code_cannot_be_controlled_by_adversary"
    )
    INLINE_MITIGATIONS_ALREADY_EXIST = "inline_mitigations_already_exist"


def _plain(value: str | None) -> str | None:
    return None if value is None else check_plain(value)


def _when(value: datetime | None) -> datetime | None:
    """Aware (UTC when no offset is written), and not in the future."""
    if value is None:
        return None
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    if moment > datetime.now(UTC) + SKEW:
        raise ValueError("lies in the future")
    return moment


class Vulnerability(BaseModel):
    """What the statement is about: ``name`` (``CVE-2023-49083``) and its aliases."""

    model_config = {"extra": "ignore", "frozen": True, "populate_by_name": True}

    id: str | None = Field(default=None, alias="@id", max_length=2048)
    name: str = Field(min_length=1, max_length=255)
    aliases: tuple[str, ...] = Field(default=(), max_length=50)

    @field_validator("name", "aliases")
    @classmethod
    def _plain_ids(cls, value: Any) -> Any:
        for item in [value] if isinstance(value, str) else value:
            if not item or len(item) > 255 or any(c.isspace() for c in item):
                raise ValueError(f"{item!r} is not a vulnerability id")
            check_plain(item)
        return value


class Component(BaseModel):
    """A product or subcomponent: an ``@id`` (a purl, an image digest) and/or identifiers."""

    model_config = {"extra": "ignore", "frozen": True, "populate_by_name": True}

    id: str | None = Field(default=None, alias="@id", max_length=2048)
    identifiers: dict[str, str] = Field(default_factory=dict, max_length=10)
    subcomponents: tuple[Component, ...] = Field(default=(), max_length=MAX_PRODUCTS)

    @property
    def names(self) -> tuple[str, ...]:
        """Every way the component is named: its ``@id`` and its ``purl`` identifier."""
        found = [self.id, self.identifiers.get("purl")]
        return tuple(dict.fromkeys(n for n in found if n))


def _component(value: Any) -> Any:
    return {"@id": value} if isinstance(value, str) else value


class Statement(BaseModel):
    """One statement: the status of a vulnerability in some products."""

    model_config = {"extra": "ignore", "frozen": True}

    vulnerability: Vulnerability
    products: tuple[Component, ...] = Field(min_length=1, max_length=MAX_PRODUCTS)
    status: Status
    justification: Justification | None = None
    impact_statement: str | None = Field(default=None, max_length=4000)
    action_statement: str | None = Field(default=None, max_length=4000)
    timestamp: datetime | None = None

    @field_validator("vulnerability", mode="before")
    @classmethod
    def _vulnerability(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("products", mode="before")
    @classmethod
    def _products(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_component(v) for v in value]
        return value

    @field_validator("impact_statement", "action_statement")
    @classmethod
    def _plain_text(cls, value: str | None) -> str | None:
        return _plain(value)

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: datetime | None) -> datetime | None:
        return _when(value)

    @model_validator(mode="after")
    def _justified(self) -> Self:
        if self.status == Status.NOT_AFFECTED and not (self.justification or self.impact_statement):
            raise ValueError("a not_affected statement needs a justification or impact_statement")
        return self


class Document(BaseModel):
    """An OpenVEX document."""

    model_config = {"extra": "ignore", "frozen": True, "populate_by_name": True}

    context: str = Field(alias="@context", max_length=255)
    id: str = Field(alias="@id", min_length=1, max_length=2048)
    author: str = Field(min_length=1, max_length=255)
    timestamp: datetime
    version: int | None = None
    statements: tuple[Statement, ...] = Field(min_length=1, max_length=MAX_STATEMENTS)

    @field_validator("context")
    @classmethod
    def _openvex(cls, value: str) -> str:
        if not value.startswith(CONTEXT_PREFIX):
            raise ValueError(f"not an OpenVEX context ({CONTEXT_PREFIX}...)")
        return value

    @field_validator("id", "author")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        return check_plain(value)

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: datetime) -> datetime:
        moment = _when(value)
        assert moment is not None
        return moment

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        pairs = sum(
            (1 + len(s.vulnerability.aliases)) * sum(1 + len(p.subcomponents) for p in s.products)
            for s in self.statements
        )
        if pairs > MAX_PAIRS:
            raise ValueError(f"statements: more than {MAX_PAIRS} (vulnerability, product) pairs")
        return self

    def time_of(self, statement: Statement) -> datetime:
        """When a statement was made: its own timestamp, else the document's."""
        return statement.timestamp or self.timestamp


def parse(raw: bytes | str) -> Document:
    """A validated document, or VexError saying what is wrong with it."""
    if len(raw) > MAX_BYTES:
        raise VexError(f"the document is larger than {MAX_BYTES} bytes")
    try:
        data = boundedjson.loads(raw)
    except ValueError as exc:
        raise VexError(f"the document is not JSON ({exc})") from exc
    return from_data(data)


def from_data(data: Any) -> Document:
    """A validated document from parsed JSON (an admin API body's ``document``)."""
    if not isinstance(data, dict):
        raise VexError("the document is not a JSON object")
    try:
        return Document.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise VexError(f"{where}: {first['msg']}{more}") from exc
