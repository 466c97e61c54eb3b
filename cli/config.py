"""How every ``gatekeeper`` command finds its settings: one option, one variable, one rule.

``--config FILE``, else ``$GATEKEEPER_CONFIG``, else no file (the defaults); the environment's
``GATEKEEPER_*`` values win over the file either way, as they do for ``gatekeeper serve``. So
``export GATEKEEPER_CONFIG=/etc/gatekeeper/gatekeeper.toml`` once, and ``serve``, ``audit``,
``quarantine``, ``rescan``, ``doctor``, ... all read the same settings.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from config.settings import Settings, load_settings

CONFIG_ENV = "GATEKEEPER_CONFIG"
HELP = f"TOML settings file (default ${CONFIG_ENV}; GATEKEEPER_* variables override it)"


def add_config(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` option, worded the same on every command."""
    parser.add_argument("--config", metavar="FILE", help=HELP)


def config_path(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Path | None:
    """The settings file a command was given, or None for the defaults."""
    value = getattr(args, "config", None) or (os.environ if env is None else env).get(CONFIG_ENV)
    return Path(value) if value else None


def settings_for(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """The command's settings: its file (:func:`config_path`) plus the environment. ``env``
    is injectable for tests; None reads the process environment."""
    path = config_path(args, env)
    return load_settings(path, dict(env) if env is not None else None)
