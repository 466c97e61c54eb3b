"""One CLI shape (issue 16): every ``gatekeeper`` command takes ``--config``, and the settings
it names come from ``--config``, else ``$GATEKEEPER_CONFIG``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from cli.config import config_path, settings_for
from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(words, parser) of every command that runs something (the leaves)."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
        return
    for action in subparsers:
        for name, child in action.choices.items():
            yield from commands(child, (*path, name))


def test_every_command_takes_config() -> None:
    found = list(commands(build_parser()))
    assert len(found) > 30
    missing = [
        " ".join(words)
        for words, parser in found
        if not any("--config" in a.option_strings for a in parser._actions)
    ]
    assert missing == []
    assert {"login", "logout", "doctor"} <= {words[0] for words, _ in found}


def test_the_option_wins_over_the_variable(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine.toml", tmp_path / "theirs.toml"
    mine.write_text('listen = "127.0.0.1:6001"\n')
    theirs.write_text('listen = "127.0.0.1:6002"\n')
    env = {"GATEKEEPER_CONFIG": str(theirs)}
    given = argparse.Namespace(config=str(mine))
    assert config_path(given, env) == mine and settings_for(given, env).port == 6001
    unset = argparse.Namespace(config=None)
    assert config_path(unset, env) == theirs and settings_for(unset, env).port == 6002
    assert config_path(unset, {}) is None and settings_for(unset, {}).port == 5000


WAYS_IN = {
    "python -m cli": (sys.executable, "-m", "cli"),
    "python -m proxy": (sys.executable, "-m", "proxy"),
    "console script": (str(Path(sys.executable).parent / "gatekeeper"),),
}


def test_every_way_in_runs_the_same_command(tmp_path: Path) -> None:
    """``python -m proxy`` stays (scripts and deployments start it so) as a shim over
    ``cli.main``; all three print the same help and refuse the same bad word."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    helps = {}
    for way, start in WAYS_IN.items():
        bad = subprocess.run(
            [*start, "no-such-command"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert bad.returncode == 2, way
        assert "invalid choice: 'no-such-command'" in bad.stderr, way
        helped = subprocess.run(
            [*start, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert helped.returncode == 0, way
        helps[way] = helped.stdout
    assert helps["python -m cli"].startswith("usage: gatekeeper")
    assert len(set(helps.values())) == 1, helps
