"""Users, robot accounts and their role bindings.

Secrets are stored only as argon2id (or, for accounts imported from an htpasswd file, bcrypt)
hashes. ``token_version`` is bumped whenever an identity is rotated, revoked or disabled, and
every token carries the version it was issued at, so revocation takes effect at the next
request without a token blocklist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId
from storage.timeutil import UTCDateTime, now, utc


class IdentityRow(Base):
    """A user (interactive) or a robot (automation, token-only, optionally expiring)."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # user | robot
    secret_hash: Mapped[str] = mapped_column(String(255))
    groups: Mapped[list[str]] = mapped_column(JSON)
    disabled: Mapped[bool] = mapped_column(Boolean)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    token_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BindingRow(Base):
    """``subject`` (``user:alice``, ``robot:ci``, ``group:devs``) may do ``actions`` on
    repositories matching ``pattern`` (or holds a role: ``admin``, ``quarantine-reader``)."""

    __tablename__ = "role_bindings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    pattern: Mapped[str] = mapped_column(String(255))
    actions: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Identity:
    """What the authorizer needs to know about the caller."""

    id: int
    name: str
    kind: str
    secret_hash: str
    groups: tuple[str, ...]
    disabled: bool
    expires_at: datetime | None
    token_version: int

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.name}"

    def usable(self, moment: datetime | None = None) -> bool:
        if self.disabled:
            return False
        return self.expires_at is None or self.expires_at > (moment or now())


@dataclass(frozen=True)
class Binding:
    subject: str
    pattern: str
    actions: tuple[str, ...]


def _identity(row: IdentityRow) -> Identity:
    return Identity(
        id=row.id,
        name=row.name,
        kind=row.kind,
        secret_hash=row.secret_hash,
        groups=tuple(row.groups or ()),
        disabled=row.disabled,
        expires_at=utc(row.expires_at),
        token_version=row.token_version,
    )


async def get_by_name(session: AsyncSession, name: str) -> Identity | None:
    row = await session.scalar(select(IdentityRow).where(IdentityRow.name == name))
    return _identity(row) if row else None


async def get_by_id(session: AsyncSession, identity_id: int) -> Identity | None:
    row = await session.get(IdentityRow, identity_id)
    return _identity(row) if row else None


async def create(
    session: AsyncSession,
    name: str,
    kind: str,
    secret_hash: str,
    groups: list[str],
    expires_at: datetime | None,
) -> Identity:
    if await get_by_name(session, name) is not None:
        raise ValueError(f"an identity named {name!r} already exists")
    moment = now()
    row = IdentityRow(
        name=name,
        kind=kind,
        secret_hash=secret_hash,
        groups=groups,
        disabled=False,
        expires_at=expires_at,
        token_version=1,
        created_at=moment,
        updated_at=moment,
    )
    session.add(row)
    await session.flush()
    return _identity(row)


async def update(
    session: AsyncSession,
    name: str,
    *,
    secret_hash: str | None = None,
    disabled: bool | None = None,
    expires_at: datetime | None = None,
    revoke_tokens: bool = True,
) -> Identity:
    row = await session.scalar(select(IdentityRow).where(IdentityRow.name == name))
    if row is None:
        raise LookupError(f"no identity named {name!r}")
    if secret_hash is not None:
        row.secret_hash = secret_hash
    if disabled is not None:
        row.disabled = disabled
    if expires_at is not None:
        row.expires_at = expires_at
    if revoke_tokens:
        row.token_version += 1
    row.updated_at = now()
    await session.flush()
    return _identity(row)


async def delete(session: AsyncSession, name: str) -> None:
    row = await session.scalar(select(IdentityRow).where(IdentityRow.name == name))
    if row is None:
        raise LookupError(f"no identity named {name!r}")
    await session.delete(row)


async def list_all(session: AsyncSession) -> list[Identity]:
    rows = (await session.scalars(select(IdentityRow).order_by(IdentityRow.name))).all()
    return [_identity(r) for r in rows]


async def grant(
    session: AsyncSession,
    subject: str,
    pattern: str,
    actions: list[str],
    identity_id: int | None = None,
) -> None:
    session.add(
        BindingRow(
            identity_id=identity_id,
            subject=subject,
            pattern=pattern,
            actions=sorted(set(actions)),
            created_at=now(),
        )
    )
    await session.flush()


async def bindings_for(session: AsyncSession, subjects: list[str]) -> list[Binding]:
    rows = (
        await session.scalars(
            select(BindingRow).where(BindingRow.subject.in_(subjects)).order_by(BindingRow.id)
        )
    ).all()
    return [Binding(r.subject, r.pattern, tuple(r.actions or ())) for r in rows]


async def all_bindings(session: AsyncSession) -> list[Binding]:
    rows = (await session.scalars(select(BindingRow).order_by(BindingRow.id))).all()
    return [Binding(r.subject, r.pattern, tuple(r.actions or ())) for r in rows]
