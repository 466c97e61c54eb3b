"""Signing in and out of the console: the gatekeeper's users and passwords, the CSRF secret of
the sign-in form, the cookie's flags, who is refused, and when a session stops working."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from storage import console_sessions, identities
from storage.console_sessions import ConsoleSessionRow
from storage.timeutil import now as utcnow
from tests.unit.proxy.ui.conftest import Browser, Client, services_of


async def test_sign_in_sets_a_strict_http_only_session_cookie(
    console: Client, browser: Callable[[], Browser]
) -> None:
    tina = browser()
    resp = await tina.sign_in("tina")
    assert resp.status == 303 and resp.headers["Location"] == "/ui/"
    cookie = next(
        v for k, v in resp.headers.items() if k == "Set-Cookie" and "gatekeeper_console=" in v
    )
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/ui" in lowered
    assert "secure" not in lowered  # plain HTTP here; see the TLS test below
    page = await tina.get("/ui/")
    assert page.status == 200
    text = await page.text()
    assert "<h1>Overview</h1>" in text and "Signed in as <strong>tina</strong>" in text


async def test_the_cookie_is_secure_when_the_console_is_public_over_https(
    fake_upstream: tuple[object, object], gatekeeper_client: Callable[..., object]
) -> None:
    from aiohttp.test_utils import TestServer

    _, server = fake_upstream
    assert isinstance(server, TestServer)
    client = await gatekeeper_client(  # type: ignore[misc]
        str(server.make_url("")),
        auth__enabled="true",
        verification__workers="0",
        public_url="https://gate.example.com",
    )
    resp = await client.get("/ui/login")
    assert resp.status == 200
    assert "secure" in resp.headers["Set-Cookie"].lower()


async def test_a_sign_in_form_without_its_csrf_secret_is_refused(
    console: Client, browser: Callable[[], Browser]
) -> None:
    someone = browser()
    await someone.get("/ui/login")
    resp = await someone.post("/ui/login", {"username": "tina", "password": "x"}, csrf=False)
    assert resp.status == 403
    assert "CSRF" in await resp.text()


async def test_wrong_passwords_and_users_without_a_console_role_are_refused(
    console: Client, browser: Callable[[], Browser]
) -> None:
    someone = browser()
    resp = await someone.sign_in("tina", "wrong")
    assert resp.status == 401 and "not right" in await resp.text()
    resp = await someone.sign_in("paul")  # pull and push only
    assert resp.status == 403
    assert "may not use the console" in await resp.text()
    assert not any(c.key == "gatekeeper_console" for c in someone.http.cookie_jar)
    resp = await someone.get("/ui/queue")
    assert resp.status == 303 and resp.headers["Location"] == "/ui/login?next=%2Fui%2Fqueue"


async def test_console_sign_ins_are_throttled_like_every_login(
    console: Client, browser: Callable[[], Browser]
) -> None:
    someone = browser()
    statuses = [(await someone.sign_in("audrey", f"guess-{n}")).status for n in range(8)]
    assert statuses[0] == 401 and statuses[-1] == 429, statuses


async def test_a_disabled_user_s_session_stops_at_its_next_request(
    console: Client, browser: Callable[[], Browser]
) -> None:
    tina = browser()
    assert (await tina.sign_in("tina")).status == 303
    assert (await tina.get("/ui/queue")).status == 200
    async with services_of(console).db() as session, session.begin():
        made = await identities.update(session, "tina", disabled=True, revoke_tokens=False)
    resp = await tina.get("/ui/queue")
    assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login")
    async with services_of(console).db() as session:
        assert await console_sessions.count_for(session, made.id) == 0


async def test_rotated_credentials_end_the_session(
    console: Client, browser: Callable[[], Browser]
) -> None:
    audrey = browser()
    assert (await audrey.sign_in("audrey")).status == 303
    async with services_of(console).db() as session, session.begin():
        await identities.update(session, "audrey", secret_hash="x")  # bumps token_version
    assert (await audrey.get("/ui/")).status == 303


async def test_idle_and_absolute_expiry(console: Client, browser: Callable[[], Browser]) -> None:
    settings = services_of(console).settings.console
    for column, age in (
        ("last_seen", settings.idle_timeout_seconds),
        ("created_at", settings.absolute_timeout_seconds),
    ):
        quinn = browser()
        assert (await quinn.sign_in("quinn")).status == 303
        assert (await quinn.get("/ui/queue")).status == 200
        old = utcnow() - timedelta(seconds=age + 1)
        async with services_of(console).db() as session, session.begin():
            await session.execute(update(ConsoleSessionRow).values({column: old}))
        assert (await quinn.get("/ui/queue")).status == 303, column


async def test_sign_out_ends_the_session_for_whoever_kept_the_cookie(
    console: Client, browser: Callable[[], Browser]
) -> None:
    gale = browser()
    assert (await gale.sign_in("gale")).status == 303
    kept = {c.key: c.value for c in gale.http.cookie_jar}
    assert (await gale.post("/ui/logout", {}, csrf=False)).status == 403  # needs the token too
    resp = await gale.post("/ui/logout", {})
    assert resp.status == 303 and resp.headers["Location"] == "/ui/login"
    thief = browser()
    thief.http.cookie_jar.update_cookies(kept, console.make_url("/ui/"))
    assert (await thief.get("/ui/")).status == 303


async def test_the_console_can_be_turned_off_and_ui_without_slash_leads_in(
    fake_upstream: tuple[object, object], gatekeeper_client: Callable[..., object]
) -> None:
    from aiohttp.test_utils import TestServer

    _, server = fake_upstream
    assert isinstance(server, TestServer)
    on = await gatekeeper_client(  # type: ignore[misc]
        str(server.make_url("")), auth__enabled="true", verification__workers="0"
    )
    resp = await on.get("/ui", allow_redirects=False)
    assert resp.status == 308 and resp.headers["Location"] == "/ui/"
    off = await gatekeeper_client(  # type: ignore[misc]
        str(server.make_url("")),
        auth__enabled="true",
        verification__workers="0",
        console__enabled="false",
    )
    assert (await off.get("/ui/login")).status == 404
