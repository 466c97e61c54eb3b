"""``gatekeeper doctor``: is everything the gatekeeper depends on in order, and if not, what to
fix. Each check is a function returning a :class:`Check`; none of them changes anything (no
schema is created or migrated, no key generated, nothing imported).

What is checked, in order: the upstream registry (reachable, and accepting the gatekeeper's own
credentials), the database (reachable) and its migrations (at the revision this code expects),
the registry storage mounted for sendfile (``upstream_storage_root``: the registry's layout,
readable), the clock (against the registry's and PostgreSQL's), the token signing key (an EC
P-256 key, from its file or the database), the age of the advisory data (when the
``vulnerabilities`` verifier is enabled), and the settings themselves (``verifiers/advice.py``).
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import Settings

CLOCK_WARN = timedelta(seconds=5)
CLOCK_FAIL = timedelta(seconds=60)
"""Tokens live minutes and their ``nbf`` allows 5 s; past a minute of skew, tokens, release
expiries and signature validity windows are judged wrongly."""
STALE_ADVISORIES = timedelta(days=7)
"""Advisory data older than this is stale when no mirror sync is configured (OSV publishes
daily)."""


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """The answer to one question about the set-up."""

    name: str
    status: Status
    detail: str
    """What was found."""
    fix: str = ""
    """What to do about it; empty when nothing needs doing."""


@dataclass
class Facts:
    """What the first checks learned and later ones use (one connection of each kind)."""

    settings: Settings
    engine: AsyncEngine | None = None
    """Open only when the database answered."""
    upstream_clock: datetime | None = None
    database_clock: datetime | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


CheckFn = Callable[[Facts], Awaitable[Check]]


async def check_upstream(facts: Facts) -> Check:
    from oci.errors import OCIError
    from upstream.client import Upstream, make_client_session, make_token_client

    settings = facts.settings
    url = str(settings.upstream_url)
    session = make_client_session(settings)
    tokens = make_token_client(settings)
    try:
        upstream = Upstream(settings, session, tokens)
        async with await upstream.request("GET", "/v2/") as resp:
            status, headers = resp.status, resp.headers
    except (OCIError, OSError) as exc:
        message = exc.message if isinstance(exc, OCIError) else str(exc)
        return Check(
            "upstream",
            Status.FAIL,
            f"{url}: {message}",
            "start the registry, or point upstream_url (GATEKEEPER_UPSTREAM_URL) at it",
        )
    finally:
        await tokens.aclose()
        await session.close()
    with contextlib.suppress(TypeError, ValueError, IndexError):
        facts.upstream_clock = parsedate_to_datetime(headers["Date"])
    if status == 200:
        version = headers.get("Docker-Distribution-API-Version", "no API version header")
        return Check("upstream", Status.OK, f"{url} answers /v2/ (HTTP 200, {version})")
    if status == 401:
        return Check(
            "upstream",
            Status.FAIL,
            f"{url} refuses the gatekeeper's credentials (HTTP 401)",
            "set upstream_username and upstream_password (GATEKEEPER_UPSTREAM_PASSWORD) to an "
            "account of the registry",
        )
    return Check(
        "upstream",
        Status.FAIL,
        f"{url} answers /v2/ with HTTP {status}: not a Distribution registry?",
        "point upstream_url at the registry's base URL",
    )


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


async def check_database(facts: Facts) -> Check:
    from storage.db import DATABASE_ERRORS, create_engine

    url = facts.settings.database_url
    shown = make_url(url).render_as_string(hide_password=True)
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return Check(
            "database",
            Status.WARN,
            f"no database yet at {path}",
            "`gatekeeper serve` creates it at its first start (or `gatekeeper db upgrade`); "
            "if one exists elsewhere, set database_url (GATEKEEPER_DATABASE_URL) to it",
        )
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                facts.database_clock = (await conn.execute(text("SELECT now()"))).scalar_one()
            else:
                await conn.execute(text("SELECT 1"))
    except DATABASE_ERRORS as exc:
        await engine.dispose()
        return Check(
            "database",
            Status.FAIL,
            f"{shown}: {type(exc).__name__}: {exc}".splitlines()[0][:300],
            "check database_url (GATEKEEPER_DATABASE_URL): for PostgreSQL, that the server runs "
            "and the user may connect",
        )
    facts.engine = engine
    return Check("database", Status.OK, f"{shown} answers")


async def check_migrations(facts: Facts) -> Check:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from storage.db import current_revision, head_revision

    if facts.engine is None:
        return Check("migrations", Status.WARN, "not checked: no database")
    current, head = await current_revision(facts.engine), head_revision()
    upgrade = "run `gatekeeper db upgrade` (`gatekeeper serve` also does it at start)"
    if current == head:
        return Check("migrations", Status.OK, f"at {head}, the newest this code knows")
    if current is None:
        return Check("migrations", Status.WARN, "no schema yet", upgrade)
    from alembic.config import Config

    from storage.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        ScriptDirectory.from_config(config).get_revision(current)
    except CommandError:
        return Check(
            "migrations",
            Status.FAIL,
            f"at {current}, which this code does not know (a newer gatekeeper migrated it)",
            "run the gatekeeper version that migrated it, or a newer one",
        )
    return Check("migrations", Status.WARN, f"at {current}; this code expects {head}", upgrade)


async def check_storage(facts: Facts) -> Check:
    root = facts.settings.upstream_storage_root
    if root is None:
        return Check(
            "storage",
            Status.OK,
            "upstream_storage_root is not set: blobs are streamed from the registry over HTTP "
            "(set it to the registry's storage.filesystem.rootdirectory, mounted read-only, for "
            "sendfile)",
        )
    blobs = root / "docker" / "registry" / "v2" / "blobs"
    fix = (
        "upstream_storage_root must be the registry's storage.filesystem.rootdirectory, "
        "mounted (read-only is enough) where the gatekeeper runs"
    )
    if not root.is_dir():
        return Check("storage", Status.FAIL, f"{root} is not a directory here", fix)
    if not blobs.is_dir():
        return Check("storage", Status.FAIL, f"{root} holds no docker/registry/v2/blobs", fix)
    sample = next(blobs.glob("sha256/*/*/data"), None)
    if sample is not None:
        try:
            with sample.open("rb") as stream:
                stream.read(1)
        except OSError as exc:
            return Check("storage", Status.FAIL, f"cannot read {sample}: {exc.strerror}", fix)
    how = "read-only" if os.statvfs(root).f_flag & os.ST_RDONLY else "writable"
    found = "a blob read" if sample else "no blob stored yet"
    return Check("storage", Status.OK, f"{root}: the registry's layout, {how}, {found}")


async def check_clock(facts: Facts) -> Check:
    now = facts.now()
    others = {
        "the registry": facts.upstream_clock,
        "PostgreSQL": facts.database_clock,
    }
    skews = {name: now - moment for name, moment in others.items() if moment is not None}
    if not skews:
        return Check("clock", Status.WARN, "nothing to compare it with (no registry answered)")
    name, skew = max(skews.items(), key=lambda item: abs(item[1]))
    seconds = abs(skew.total_seconds())
    detail = f"{seconds:.0f}s from {name}'s" + (
        f" ({', '.join(sorted(skews))} compared)" if len(skews) > 1 else ""
    )
    fix = "run NTP (systemd-timesyncd, chrony) on every host of the gatekeeper and registry"
    if abs(skew) > CLOCK_FAIL:
        return Check("clock", Status.FAIL, detail + ": tokens and expiries are judged wrongly", fix)
    if abs(skew) > CLOCK_WARN:
        return Check("clock", Status.WARN, detail, fix)
    return Check("clock", Status.OK, detail)


async def check_token_key(facts: Facts) -> Check:
    from config.settings import ConfigError
    from proxy.auth import keystore
    from proxy.auth.keyring import KeyFormatError
    from proxy.auth.sealing import SealError
    from storage.db import sessionmaker

    auth = facts.settings.auth
    if not auth.enabled:
        return Check(
            "token key",
            Status.WARN,
            "authentication is off: anyone who reaches the gatekeeper may push and pull",
            "set [auth] enabled = true (the default) and create users",
        )
    try:
        if auth.signing_key_file is not None:
            keyring = await keystore.FileKeys(auth).load()
            return Check("token key", Status.OK, f"{keyring.signing_kid}, from a key file")
    except (ConfigError, KeyFormatError, OSError) as exc:
        return Check(
            "token key",
            Status.FAIL,
            str(exc),
            "give an EC P-256 private key in PEM, mode 0600 (openssl genpkey -algorithm EC "
            "-pkeyopt ec_paramgen_curve:P-256), or unset auth.signing_key_file and set a "
            "key-encryption key (docs/deployment.md)",
        )
    fix = (
        "set a key-encryption key (GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY: base64 of 32 random "
        "bytes, or auth.key_encryption_key_file) or auth.signing_key_file; see "
        "docs/deployment.md (the token signing key)"
    )
    try:
        kek = keystore.key_encryption_key(auth)
        if kek is None:
            why = "no key-encryption key and no auth.signing_key_file: serve refuses to start"
            return Check("token key", Status.FAIL, why, fix)
        if facts.engine is None:
            return Check("token key", Status.WARN, "not checked: no database")
        keys = keystore.DatabaseKeys(
            sessionmaker(facts.engine), kek, overlap_seconds=auth.token_ttl_seconds
        )
        kid = await keys.inspect()
    except (ConfigError, KeyFormatError, SealError, OSError) as exc:
        return Check("token key", Status.FAIL, str(exc), fix)
    if kid is None:
        return Check("token key", Status.OK, "none yet: generated and sealed at the first start")
    return Check("token key", Status.OK, f"{kid}, sealed in the database (every replica's)")


async def check_advisories(facts: Facts) -> Check:
    from storage.models import AdvisoryDataVersion

    settings = facts.settings
    configured = settings.verifiers.get("vulnerabilities")
    if configured is None or not configured.enabled:
        return Check("advisories", Status.OK, "the vulnerabilities verifier is not enabled")
    if facts.engine is None:
        return Check("advisories", Status.WARN, "not checked: no database")
    interval = settings.advisories.sync_interval
    syncing = bool(settings.advisories.urls) and interval > 0
    fix = (
        "check the mirror sync in the gatekeeper's log and `gatekeeper advisories sync`"
        if syncing
        else "import OSV data (`gatekeeper advisories import all.zip`, e.g. "
        "https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip), or set "
        "[advisories] mirror_urls to sync it on a schedule"
    )
    async with facts.engine.connect() as conn:
        newest = (await conn.execute(select(func.max(AdvisoryDataVersion.imported_at)))).scalar()
    if newest is None:
        return Check(
            "advisories", Status.WARN, "no advisory data: vulnerabilities finds nothing", fix
        )
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    age = facts.now() - newest
    limit = (
        max(timedelta(seconds=2 * interval), timedelta(hours=1)) if syncing else STALE_ADVISORIES
    )
    days = age.total_seconds() / 86400
    detail = f"newest data imported {days:.1f} days ago"
    if age > limit:
        return Check("advisories", Status.WARN, detail + " (stale)", fix)
    return Check("advisories", Status.OK, detail)


async def check_settings(facts: Facts) -> Check:
    from verifiers.advice import settings_advice

    advice = settings_advice(facts.settings)
    if not advice:
        return Check("settings", Status.OK, "nothing that does not do what it seems to")
    return Check(
        "settings",
        Status.WARN,
        "; ".join(f"{a.key}: {a.message}" for a in advice),
        "see `gatekeeper check-config`",
    )


CHECKS: tuple[CheckFn, ...] = (
    check_upstream,
    check_database,
    check_migrations,
    check_storage,
    check_clock,
    check_token_key,
    check_advisories,
    check_settings,
)


@contextlib.asynccontextmanager
async def _facts(settings: Settings) -> AsyncIterator[Facts]:
    facts = Facts(settings)
    try:
        yield facts
    finally:
        if facts.engine is not None:
            await facts.engine.dispose()


async def diagnose(settings: Settings, checks: tuple[CheckFn, ...] = CHECKS) -> list[Check]:
    """Every check, in order; a check that crashes is a failed check, not a crash."""
    results: list[Check] = []
    async with _facts(settings) as facts:
        for check in checks:
            try:
                results.append(await check(facts))
            except Exception as exc:
                name = check.__name__.removeprefix("check_").replace("_", " ")
                results.append(Check(name, Status.FAIL, f"{type(exc).__name__}: {exc}"))
    return results


def as_json(check: Check) -> dict[str, Any]:
    return {
        "name": check.name,
        "status": check.status.value,
        "detail": check.detail,
        "fix": check.fix,
    }
