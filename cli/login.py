"""``gatekeeper login`` and ``gatekeeper logout``: an admin's token for the admin API, kept for
the next commands.

``login`` asks the gatekeeper's token endpoint (``/auth/token``, with the user's name and
password) for a token, checks that it opens the admin API (the user holds the ``admin`` role),
and stores it with the gatekeeper's URL in ``$XDG_CONFIG_HOME/gatekeeper/login.json`` (else
``~/.config/gatekeeper/login.json``), readable by this user only (0600). ``quarantine`` and
``policy`` then use it when given neither ``--url``/``--token`` nor a settings file, so the
release command a ``DENIED`` message prints works as printed. The token lives as long as the
gatekeeper's ``auth.token_ttl_seconds`` (5 minutes by default, at most an hour): log in again
when it has expired. The password is never stored.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cli.config import add_config, config_path
from config.text import visible

ADMIN_URL_ENV = "GATEKEEPER_ADMIN_URL"
DEFAULT_URL = "http://127.0.0.1:5000"


class LoginError(Exception):
    """Logging in failed; the message says why and what to do."""


@dataclass(frozen=True)
class Login:
    """A stored login: where, who, the token and when it stops working."""

    url: str
    user: str
    token: str
    expires_at: str
    """ISO 8601, UTC."""

    def expired(self, now: datetime | None = None) -> bool:
        return datetime.fromisoformat(self.expires_at) <= (now or datetime.now(UTC))


def login_file(env: Mapping[str, str]) -> Path | None:
    """Where the login is kept for the user whose environment ``env`` is (None: an environment
    with neither ``XDG_CONFIG_HOME`` nor ``HOME`` has no user to keep it for)."""
    base = env.get("XDG_CONFIG_HOME") or (
        os.path.join(env["HOME"], ".config") if env.get("HOME") else None
    )
    return Path(base) / "gatekeeper" / "login.json" if base else None


def load_login(env: Mapping[str, str]) -> Login | None:
    """The stored login, or None when there is none (or it cannot be read)."""
    path = login_file(env)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Login(**{key: str(data[key]) for key in ("url", "user", "token", "expires_at")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_login(login: Login, env: Mapping[str, str]) -> Path:
    """Write ``login`` readable by this user only: the file is created 0600, never widened."""
    path = login_file(env)
    if path is None:
        raise LoginError("neither HOME nor XDG_CONFIG_HOME is set: nowhere to keep the login")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        json.dump(asdict(login), out)
    return path


def default_url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """``--url``, else ``$GATEKEEPER_ADMIN_URL``, else the settings' ``public_url`` or listen
    address (when a settings file is named), else the address ``scripts/run`` serves on."""
    if getattr(args, "url", None):
        return str(args.url).rstrip("/")
    if env.get(ADMIN_URL_ENV):
        return env[ADMIN_URL_ENV].rstrip("/")
    if config_path(args, env) is not None:
        from cli.config import settings_for

        settings = settings_for(args, env)
        if settings.public_url is not None:
            return str(settings.public_url).rstrip("/")
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        scheme = "https" if settings.tls_cert else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{settings.port}"
    return DEFAULT_URL


def log_in(
    url: str, user: str, password: str, transport: httpx.BaseTransport | None = None
) -> Login:
    """A token for ``user`` that opens the admin API at ``url``."""
    with httpx.Client(base_url=url, timeout=30.0, transport=transport) as http:
        try:
            answer = http.get("/auth/token", auth=(user, password))
        except httpx.HTTPError as exc:
            raise LoginError(f"cannot reach the gatekeeper at {url}: {exc}") from exc
        if answer.status_code != 200:
            raise LoginError(f"{url} refused the login: {_message(answer)}")
        body = answer.json()
        token = str(body.get("token") or body.get("access_token") or "")
        if not token:
            raise LoginError(f"{url} sent no token (is it a gatekeeper?)")
        lifetime = int(body.get("expires_in") or 60)
        check = http.get(
            "/admin/api/v1/images",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        if check.status_code != 200:
            raise LoginError(f"logged in, but the admin API refused {user}: {_message(check)}")
    expires = datetime.now(UTC) + timedelta(seconds=lifetime)
    return Login(url, user, token, expires.isoformat())


def _message(answer: httpx.Response) -> str:
    """The gatekeeper's own words (an OCI or admin error envelope), else the status."""
    try:
        data = answer.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return f"{errors[0].get('message')} (HTTP {answer.status_code})"
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return f"{error['message']} (HTTP {answer.status_code})"
    return f"HTTP {answer.status_code}"


def cmd_login(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    environ = os.environ if env is None else env
    url = default_url(args, environ)
    user = args.username or input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {user} at {url}: ")
    try:
        login = log_in(url, user, password)
    except LoginError as exc:
        print(f"gatekeeper login: {visible(exc)}", file=sys.stderr)
        return 1
    try:
        path = save_login(login, environ)
    except LoginError as exc:
        print(f"gatekeeper login: {visible(exc)}", file=sys.stderr)
        return 1
    until = login.expires_at[:19].replace("T", " ")
    print(f"logged in to {visible(url)} as {visible(user)} until {until} UTC (token in {path})")
    return 0


def cmd_logout(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    path = login_file(os.environ if env is None else env)
    if path is not None and path.exists():
        path.unlink()
        print(f"logged out (removed {path})")
    else:
        print("not logged in")
    return 0


def add_login_commands(sub: Any) -> None:
    """Register ``login`` and ``logout`` on the main parser's subcommands."""
    login = sub.add_parser(
        "login",
        help="get an admin's token for quarantine and policy commands, and keep it",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    login.add_argument(
        "--url", help=f"the gatekeeper (default ${ADMIN_URL_ENV}, the settings, or {DEFAULT_URL})"
    )
    login.add_argument("--username", "-u", help="a user with the admin role (asked if not given)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_config(login)
    login.set_defaults(func=cmd_login)
    logout = sub.add_parser("logout", help="forget the stored admin token")
    add_config(logout)  # accepted like every command's; where the login is kept needs none
    logout.set_defaults(func=cmd_logout)
