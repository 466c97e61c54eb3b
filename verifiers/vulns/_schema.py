"""The part of the OSV schema (https://ossf.github.io/osv-schema/) this project reads, as
pydantic models: what ``osv.Advisory.from_json`` checks a record against before using it.

Strict types (a number is not a string), unknown fields ignored (the raw record keeps them),
``null`` accepted wherever a field may be absent. String lengths are those of the advisory
store's columns (``storage/models.py``): a longer id or package name would fail the whole
import's transaction on PostgreSQL, so it is a bad record instead.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(strict=True, extra="ignore")


class Package(BaseModel):
    model_config = _STRICT

    ecosystem: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)


class Range(BaseModel):
    model_config = _STRICT

    type: str
    events: list[dict[str, str]] | None = None


class Severity(BaseModel):
    """Read by ``severity.score`` (a CVSS vector); other types are kept but not scored."""

    model_config = _STRICT

    type: str
    score: str


class Affected(BaseModel):
    model_config = _STRICT

    package: Package
    ranges: list[Range] | None = None
    versions: list[str] | None = None
    severity: list[Severity] | None = None


class Record(BaseModel):
    model_config = _STRICT

    id: str = Field(min_length=1, max_length=128)
    modified: str | None = Field(default=None, max_length=64)
    summary: str | None = None
    details: str | None = None
    aliases: list[str] | None = None
    affected: list[Affected] | None = None
    severity: list[Severity] | None = None
