"""Admin API authentication: the bearer token, compared in constant time, fails closed."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from pydantic import SecretStr

from proxy.admin.auth import token_matches


def test_token_matches_only_the_configured_token() -> None:
    secret = SecretStr("s3cret-token")
    assert token_matches("s3cret-token", secret)
    assert not token_matches("s3cret-toke", secret)
    assert not token_matches("s3cret-token ", secret)
    assert not token_matches("", secret)
    assert not token_matches(None, secret)
    assert not token_matches("s3cret-token", None)


def test_empty_configured_token_matches_nothing() -> None:
    """An empty token must mean "disabled", never "an empty bearer is an admin"."""
    assert not token_matches("", SecretStr(""))


def test_non_ascii_guess_is_a_mismatch_not_an_error() -> None:
    assert not token_matches("tökén", SecretStr("token"))
    assert token_matches("tökén", SecretStr("tökén"))


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison goes through hmac.compare_digest, on bytes."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert token_matches("abc", SecretStr("abc"))
    assert not token_matches("abd", SecretStr("abc"))
    assert calls == [(b"abc", b"abc"), (b"abd", b"abc")]
