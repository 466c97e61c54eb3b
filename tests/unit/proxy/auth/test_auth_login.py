"""Logins with a user's password: checked in full once, then remembered for a while
(``VerifiedSecrets``), without letting the memory answer for a wrong secret, a changed
password, or an identity that may no longer log in."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.auth import AuthSettings
from proxy.auth import passwords, service
from proxy.auth.service import AuthError, AuthService
from proxy.auth.tokens import TokenIssuer
from storage import identities

ADDRESS = "192.0.2.7"


class Counted:
    """verify_secret, counting the full checks made."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, stored: str, secret: str) -> bool:
        self.calls += 1
        return passwords.verify_secret(stored, secret)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    spy = Counted()
    monkeypatch.setattr(service, "verify_secret", spy)
    return spy


@pytest.fixture
async def auth(db: async_sessionmaker[Any]) -> AuthService:
    async with db() as session, session.begin():
        await identities.create(session, "tina", "user", passwords.hash_secret("right"), [], None)
    return AuthService(AuthSettings(), db, TokenIssuer.__new__(TokenIssuer))


async def test_a_secret_that_verified_is_not_hashed_again(
    auth: AuthService, counted: Counted
) -> None:
    for _ in range(3):
        assert (await auth.login("tina", "right", ADDRESS)).name == "tina"
    assert counted.calls == 1


async def test_a_wrong_secret_always_pays_the_full_check(
    auth: AuthService, counted: Counted
) -> None:
    await auth.login("tina", "right", ADDRESS)
    for wrong in ("wrong", "right ", "Right"):
        with pytest.raises(AuthError):
            await auth.login("tina", wrong, ADDRESS)
    with pytest.raises(AuthError):
        await auth.login("nobody", "right", ADDRESS)  # the dummy hash, never remembered
    assert counted.calls == 5


async def test_a_changed_password_is_not_answered_from_memory(
    auth: AuthService, counted: Counted
) -> None:
    await auth.login("tina", "right", ADDRESS)
    async with auth.db() as session, session.begin():
        await identities.update(session, "tina", secret_hash=passwords.hash_secret("new"))
    with pytest.raises(AuthError, match="invalid credentials"):
        await auth.login("tina", "right", ADDRESS)
    assert (await auth.login("tina", "new", ADDRESS)).name == "tina"
    assert counted.calls == 3


async def test_a_disabled_identity_is_refused_though_its_secret_is_remembered(
    auth: AuthService,
) -> None:
    await auth.login("tina", "right", ADDRESS)
    async with auth.db() as session, session.begin():
        await identities.update(session, "tina", disabled=True)
    with pytest.raises(AuthError, match="disabled"):
        await auth.login("tina", "right", ADDRESS)


def test_the_memory_forgets_after_its_time_and_beyond_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    memory = passwords.VerifiedSecrets(ttl=60, size=2)
    memory.remember("hash-a", "a")
    assert memory.known("hash-a", "a")
    assert not memory.known("hash-a", "b") and not memory.known("hash-b", "a")
    now[0] += 61
    assert not memory.known("hash-a", "a")
    for name in ("a", "b", "c"):
        memory.remember(f"hash-{name}", name)
    assert [memory.known(f"hash-{n}", n) for n in ("a", "b", "c")] == [False, True, True]


def test_the_memory_holds_no_secret() -> None:
    memory = passwords.VerifiedSecrets()
    memory.remember("$argon2id$stored", "hunter2-correct-horse")
    held = b"".join(memory._seen)
    assert b"hunter2" not in held and b"argon2" not in held
    assert all(len(key) == 32 for key in memory._seen)
