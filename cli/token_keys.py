"""``gatekeeper token-key``: the keys client tokens are signed with, sealed in the database.

``rotate`` makes a new key the one replicas sign with; the previous one keeps verifying until
every token it signed has expired, so nobody is logged out. Replicas pick the new key up within
a minute (at once when a token names it). ``list`` shows the keys: their ``kid``, state, and the
id of the key-encryption key that sealed them (never a secret). Both work on the database of
the settings, as ``gatekeeper advisories import`` does.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings
from storage.timeutil import now


def add_token_key_command(sub: Any) -> None:
    """Add ``token-key rotate|list``."""
    parser = sub.add_parser("token-key", help="rotate or list the token signing keys")
    commands = parser.add_subparsers(dest="token_key_command", required=True)
    rotate = commands.add_parser("rotate", help="sign new tokens with a new key")
    rotate.add_argument("--config")
    rotate.set_defaults(func=cmd_rotate)
    listed = commands.add_parser("list", help="the keys, the active one first")
    listed.add_argument("--config")
    listed.set_defaults(func=cmd_list)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


async def _with_db(settings: Settings, work: Any) -> Any:
    from storage.db import create_engine, sessionmaker, upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        return await work(sessionmaker(engine))
    finally:
        await engine.dispose()


def cmd_rotate(args: argparse.Namespace) -> int:
    from proxy.auth.keystore import rotate

    settings = _settings(args)
    previous, active = asyncio.run(_with_db(settings, lambda db: rotate(db, settings.auth)))
    if previous:
        print(f"retired {previous}: its tokens are accepted until they expire")
    print(f"signing with {active}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from proxy.auth.keystore import describe, stored_keys

    settings = _settings(args)
    keys = asyncio.run(_with_db(settings, stored_keys))
    moment = now()
    for key in keys:
        print(describe(key, moment))
    if not keys:
        print("no token signing key in the database (one is made when the gatekeeper starts)")
    return 0
