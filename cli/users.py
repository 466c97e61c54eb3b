"""``gatekeeper users ...`` and ``gatekeeper robots ...``: identities, straight in the database.

Secrets are generated here (or read from stdin, never from the command line, where they would
land in shell history and ``ps``), printed once, and stored only as argon2id hashes. Rotating,
disabling or revoking bumps the identity's token version, so its tokens die at the next request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cli.config import add_config, settings_for
from config.durations import DurationError
from config.durations import parse_duration as parse_seconds
from config.settings import Settings
from config.text import check_plain, visible

ACTIONS = {"pull", "push", "delete", "admin", "auditor", "quarantine-reader"}


class UsageError(Exception):
    """Bad input on the command line; the message says what to fix."""


def parse_grant(value: str) -> tuple[str, list[str]]:
    """``team/*=pull,push`` -> (pattern, actions)."""
    pattern, sep, actions = value.partition("=")
    wanted = [a.strip() for a in actions.split(",") if a.strip()]
    if not sep or not pattern or not wanted:
        raise UsageError(f"--grant {value!r}: expected PATTERN=ACTION[,ACTION], e.g. team/*=pull")
    unknown = set(wanted) - ACTIONS
    if unknown:
        raise UsageError(f"--grant {value!r}: unknown action(s) {', '.join(sorted(unknown))}")
    try:
        check_plain(pattern)
    except ValueError as exc:
        raise UsageError(f"--grant {value!r}: the pattern {exc}") from exc
    return pattern, wanted


def check_name(name: str) -> str:
    """An identity's name is the actor of every access-log row it causes: no control or
    bidirectional characters (``config/text.py``)."""
    try:
        return check_plain(name)
    except ValueError as exc:
        raise UsageError(f"the name {visible(name)!r} {exc}") from exc


def parse_duration(value: str) -> timedelta:
    """An identity's lifetime in ``config/durations.py``'s grammar (``90d``, ``12h``)."""
    try:
        return timedelta(seconds=parse_seconds(value))
    except DurationError as exc:
        raise UsageError(f"--expires-in: {exc}") from None


def _read_secret(args: argparse.Namespace, kind: str) -> tuple[str, bool]:
    """(secret, generated?)"""
    if getattr(args, "password_stdin", False):
        secret = sys.stdin.readline().rstrip("\n")
        if len(secret) < 12:
            raise UsageError("passwords must have at least 12 characters")
        return secret, False
    if kind == "robot":
        from proxy.auth.passwords import new_robot_token

        return new_robot_token(), True
    return secrets.token_urlsafe(18), True


def _settings(args: argparse.Namespace) -> Settings:
    return settings_for(args)


def _run(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    from storage.db import create_engine, sessionmaker, upgrade

    settings = _settings(args)

    async def main() -> int:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await work(sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def cmd_create(args: argparse.Namespace) -> int:
    from proxy.auth.passwords import hash_secret
    from storage import identities

    kind = args.kind
    check_name(args.name)
    grants = [parse_grant(g) for g in args.grant or []]
    if args.admin:
        grants.append(("*", ["admin"]))
    expires = (
        datetime.now().astimezone() + parse_duration(args.expires_in) if args.expires_in else None
    )
    secret, generated = _read_secret(args, kind)

    async def work(db: Any) -> int:
        async with db() as session, session.begin():
            identity = await identities.create(
                session, args.name, kind, hash_secret(secret), list(args.group or []), expires
            )
            for pattern, actions in grants:
                await identities.grant(session, identity.subject, pattern, actions, identity.id)
        return 0

    _run(args, work)
    print(f"created {kind} {visible(args.name)}")
    for pattern, actions in grants:
        print(f"  may {','.join(actions)} on {visible(pattern)}")
    if generated:
        label = "token" if kind == "robot" else "password"
        print(f"{label} (shown once, store it now): {secret}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from storage import identities

    rows: list[dict[str, Any]] = []

    async def work(db: Any) -> int:
        async with db() as session:
            everyone = [i for i in await identities.list_all(session) if i.kind == args.kind]
            bindings = await identities.all_bindings(session)
        for ident in everyone:
            rows.append(
                {
                    "name": ident.name,
                    "kind": ident.kind,
                    "groups": list(ident.groups),
                    "disabled": ident.disabled,
                    "expires_at": ident.expires_at.isoformat() if ident.expires_at else None,
                    "grants": [
                        f"{b.pattern}={','.join(b.actions)}"
                        for b in bindings
                        if b.subject == ident.subject
                    ],
                }
            )
        return 0

    _run(args, work)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'NAME':24} {'STATE':9} {'EXPIRES':26} GRANTS")
    for row in rows:
        state = "disabled" if row["disabled"] else "active"
        grants = visible(" ".join(row["grants"]) or "-")
        print(f"{visible(row['name']):24} {state:9} {row['expires_at'] or '-':26} {grants}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from proxy.auth.passwords import hash_secret
    from storage import identities

    secret, generated = _read_secret(args, args.kind)

    async def work(db: Any) -> int:
        async with db() as session, session.begin():
            await identities.update(session, args.name, secret_hash=hash_secret(secret))
        return 0

    _run(args, work)
    print(f"rotated {args.kind} {visible(args.name)}; its old secret and tokens no longer work")
    if generated:
        label = "token" if args.kind == "robot" else "password"
        print(f"{label} (shown once, store it now): {secret}")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    from storage import identities

    async def work(db: Any) -> int:
        async with db() as session, session.begin():
            await identities.update(session, args.name, disabled=disabled)
        return 0

    _run(args, work)
    print(f"{'disabled' if disabled else 'enabled'} {args.kind} {visible(args.name)}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from storage import identities

    async def work(db: Any) -> int:
        async with db() as session, session.begin():
            await identities.delete(session, args.name)
        return 0

    _run(args, work)
    print(
        f"revoked {args.kind} {visible(args.name)}: deleted with its grants; "
        "its tokens no longer work"
    )
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    from storage import identities

    pattern, actions = parse_grant(args.grant)

    async def work(db: Any) -> int:
        async with db() as session, session.begin():
            identity = await identities.get_by_name(session, args.name)
            if identity is None or identity.kind != args.kind:
                raise UsageError(f"no {args.kind} named {args.name!r}")
            await identities.grant(session, identity.subject, pattern, actions, identity.id)
        return 0

    _run(args, work)
    print(f"{args.kind} {visible(args.name)} may now {','.join(actions)} on {visible(pattern)}")
    return 0


def cmd_import_htpasswd(args: argparse.Namespace) -> int:
    """Accounts from a plain registry's htpasswd file keep their bcrypt hashes (verified as
    bcrypt), so nobody has to choose a new password on migration."""
    from storage import identities

    grants = [parse_grant(g) for g in args.grant or []]
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(Path(args.file).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, hashed = line.strip().partition(":")
        if not sep or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise UsageError(f"{args.file}:{number}: only bcrypt entries (htpasswd -B) import")
        try:
            check_name(name)
        except UsageError as exc:
            raise UsageError(f"{args.file}:{number}: {exc}") from exc
        entries.append((name, hashed))

    async def work(db: Any) -> int:
        async with db() as session, session.begin():
            for name, hashed in entries:
                identity = await identities.create(session, name, "user", hashed, [], None)
                for pattern, actions in grants:
                    await identities.grant(session, identity.subject, pattern, actions, identity.id)
        return 0

    _run(args, work)
    print(f"imported {len(entries)} users from {visible(args.file)}")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """First start: with no identity at all, create an admin whose generated password goes to
    a file only root can read (never to the terminal, which may be logged). Does nothing once
    any identity exists, so it is safe on every start."""
    from proxy.auth.passwords import hash_secret
    from storage import identities

    target = Path(args.password_file)
    secret = secrets.token_urlsafe(18)

    async def work(db: Any) -> int:
        async with db() as session, session.begin():
            if await identities.list_all(session):
                return 0
            admin = await identities.create(
                session, args.name, "user", hash_secret(secret), [], None
            )
            await identities.grant(
                session, admin.subject, "*", ["pull", "push", "delete", "admin"], admin.id
            )
        return 1

    if _run(args, work):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600)
        target.write_text(secret + "\n")
        print(f"created admin user {visible(args.name)!r}; its password is in {target} (mode 600)")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``users`` and ``robots`` on the main parser's subcommands."""
    for kind, plural in (("user", "users"), ("robot", "robots")):
        parser = sub.add_parser(plural, help=f"manage {plural}")
        inner = parser.add_subparsers(dest=f"{plural}_command", required=True)

        def command(
            name: str,
            func: Callable[[argparse.Namespace], int],
            help_: str,
            inner: Any = inner,
            kind: str = kind,
        ) -> Any:
            cmd = inner.add_parser(name, help=help_)
            add_config(cmd)
            cmd.set_defaults(func=func, kind=kind)
            return cmd

        create = command("create", cmd_create, f"create a {kind}")
        create.add_argument("name")
        create.add_argument("--grant", action="append", metavar="PATTERN=ACTIONS")
        create.add_argument("--group", action="append")
        create.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d (robots mostly)")
        create.add_argument(
            "--admin", action="store_true", help="global admin (the same as --grant '*=admin')"
        )
        if kind == "user":
            create.add_argument("--password-stdin", action="store_true")
        listing = command("list", cmd_list, f"list {plural}")
        listing.add_argument("--json", action="store_true")
        rotate = command("rotate", cmd_rotate, "new secret; old secret and tokens stop working")
        rotate.add_argument("name")
        if kind == "user":
            rotate.add_argument("--password-stdin", action="store_true")
        for name, func, help_ in (
            ("disable", lambda a: _set_disabled(a, True), "refuse logins and tokens"),
            ("enable", lambda a: _set_disabled(a, False), "allow again"),
            ("revoke", cmd_revoke, "delete the identity and its grants"),
        ):
            command(name, func, help_).add_argument("name")
        grant = command("grant", cmd_grant, "add a permission")
        grant.add_argument("name")
        grant.add_argument("grant", metavar="PATTERN=ACTIONS")
        if kind == "user":
            boot = command("bootstrap", cmd_bootstrap, "create a first admin if nobody exists")
            boot.add_argument("--name", default="admin")
            boot.add_argument("--password-file", required=True)
            imp = command("import-htpasswd", cmd_import_htpasswd, "import bcrypt htpasswd users")
            imp.add_argument("file")
            imp.add_argument("--grant", action="append", metavar="PATTERN=ACTIONS")
