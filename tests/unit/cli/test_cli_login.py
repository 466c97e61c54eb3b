"""``gatekeeper login``: a token from the token endpoint, kept only if it opens the admin API,
in a file only its user can read (against httpx's MockTransport; the real server is driven in
``tests/e2e/test_first_hour.py``)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cli.login import (
    DEFAULT_URL,
    Login,
    LoginError,
    default_url,
    load_login,
    log_in,
    login_file,
    save_login,
)

Handler = Callable[[httpx.Request], httpx.Response]


def server(admin_status: int = 200, token_status: int = 200) -> tuple[Handler, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path} {request.headers.get('Authorization', '').split(' ')[0]}")
        if request.url.path == "/auth/token":
            if token_status != 200:
                errors = [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]
                return httpx.Response(token_status, json={"errors": errors})
            return httpx.Response(200, json={"token": "jwt", "expires_in": 300})
        assert request.headers["Authorization"] == "Bearer jwt"
        if admin_status != 200:
            error = {"code": "FORBIDDEN", "message": "bob does not hold the admin role"}
            return httpx.Response(admin_status, json={"error": error})
        return httpx.Response(200, json={"images": []})

    return handle, seen


def test_a_login_checks_the_admin_role_before_keeping_the_token() -> None:
    handle, seen = server()
    login = log_in("http://gk:5000", "alice", "pw", httpx.MockTransport(handle))
    assert (login.url, login.user, login.token) == ("http://gk:5000", "alice", "jwt")
    assert 290 < (datetime.fromisoformat(login.expires_at) - datetime.now(UTC)).seconds <= 300
    assert seen == ["/auth/token Basic", "/admin/api/v1/images Bearer"]


@pytest.mark.parametrize(
    ("admin", "token", "message"),
    [
        (403, 200, "the admin API refused bob: bob does not hold the admin role (HTTP 403)"),
        (200, 401, "refused the login: invalid credentials (HTTP 401)"),
    ],
)
def test_a_refused_login_says_why(admin: int, token: int, message: str) -> None:
    handle, _ = server(admin, token)
    with pytest.raises(LoginError, match=re.escape(message)):
        log_in("http://gk:5000", "bob", "pw", httpx.MockTransport(handle))


def test_the_login_file_is_private_and_read_back(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    path = login_file(env)
    assert path == tmp_path / "cfg" / "gatekeeper" / "login.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)  # an older, wider file is narrowed, not trusted
    login = Login("http://gk:5000", "alice", "jwt", "2030-01-01T00:00:00+00:00")
    assert save_login(login, env) == path
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_login(env) == login and not login.expired()
    assert load_login({}) is None  # no HOME, no XDG_CONFIG_HOME: no user to keep it for


def test_the_default_url_follows_the_settings(tmp_path: Path) -> None:
    settings = tmp_path / "gk.toml"
    settings.write_text('listen = "0.0.0.0:5443"\n')
    args = argparse.Namespace(url=None, config=None)
    assert default_url(args, {}) == DEFAULT_URL
    assert default_url(args, {"GATEKEEPER_CONFIG": str(settings)}) == "http://127.0.0.1:5443"
    settings.write_text('public_url = "https://registry.example.com"\n')
    args.config = str(settings)
    assert default_url(args, {}) == "https://registry.example.com"
    assert default_url(args, {"GATEKEEPER_ADMIN_URL": "http://x:1/"}) == "http://x:1"
