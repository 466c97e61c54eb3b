"""``gatekeeper quarantine`` and ``policy`` with a settings file instead of a URL (issue 16): the
admin API's own handlers, served inside the command over the settings' database, with the same
refusals, history and access-log rows as over HTTP; and how a command picks where to go."""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.admin import CommandError, endpoint
from cli.login import Login, load_login, save_login
from cli.main import build_parser, main
from config.policy import Policy
from storage import verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.verdicts import DecisionRecord, FindingRecord
from tests.support.database import Database, run_sync
from verifiers.lifecycle import State

DIGEST = "sha256:" + "b" * 64
POLICY = {"name": "team", "repositories": ["team/*"], "require": ["scan"]}


def seed(db: Database) -> None:
    """A quarantined image, decided under the configured policy."""
    policy = Policy.model_validate(POLICY)
    record = DecisionRecord(
        state=State.QUARANTINED,
        reasons=("1 high (CVE-7)",),
        policy=policy.name,
        policy_version=policy.version,
        data_versions={"scan": "1"},
        outcomes=({"verifier": "scan", "version": "1", "status": "ok", "detail": ""},),
        findings=(FindingRecord("scan", "CVE-7", "high", "bad"),),
    )

    async def work() -> None:
        engine = create_engine(db.url)
        try:
            await upgrade(engine)
            async with sessionmaker(engine)() as session, session.begin():
                await verdicts.record_decision(session, "team/app", DIGEST, record)
        finally:
            await engine.dispose()

    run_sync(work)


@pytest.fixture
def settings_file(fresh_db: Database, tmp_path: Path) -> Path:
    seed(fresh_db)
    path = tmp_path / "gatekeeper.toml"
    path.write_text(
        f'database_url = "{fresh_db.url}"\n'
        '[verifiers.scan]\nplugin = "tests.fakes.verifiers:Slow"\n'
        f"[[policies]]\nname = {json.dumps(POLICY['name'])}\nrepositories = ['team/*']\n"
        "require = ['scan']\n"
    )
    return path


def test_show_release_and_the_record_with_a_settings_file(
    settings_file: Path, fresh_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    image = f"team/app@{DIGEST}"
    assert main(["quarantine", "show", image, "--config", str(settings_file)]) == 0
    shown = capsys.readouterr().out
    assert "state:    quarantined (cannot be pulled)" in shown and "CVE-7" in shown
    status = main(
        ["quarantine", "release", image, "--config", str(settings_file), "--reason", "accepted"]
    )
    assert status == 0, capsys.readouterr().err
    who = f"admin-token:{getpass.getuser()}"
    assert f"released {image} (by {who})" in capsys.readouterr().out
    (row,) = fresh_db.fetch("SELECT state, released_by, release_reason FROM verdicts")
    assert (row["state"], row["released_by"], row["release_reason"]) == (
        "released",
        who,
        "accepted",
    )
    actions = sorted(r["action"] for r in fresh_db.fetch("SELECT action FROM access_log"))
    assert actions == ["admin.image", "admin.release", "verdict.released"]  # each request's row
    # The API's own refusals, in its own words.
    unknown = f"team/app@sha256:{'c' * 64}"
    args = ["quarantine", "release", unknown, "--config", str(settings_file), "--reason", "x"]
    assert main(args) == 1
    assert "the gatekeeper has no verdict for" in capsys.readouterr().err


def test_policy_test_takes_the_settings_file(
    settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16: ``policy test --config`` used to be refused."""
    assert main(["policy", "test", "--config", str(settings_file)]) == 0
    assert "1 verdicts checked against the configured policies" in capsys.readouterr().out


def test_an_unreachable_database_is_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gatekeeper.toml"
    path.write_text('database_url = "postgresql+asyncpg://x@127.0.0.1:9/x"\n')
    assert main(["quarantine", "list", "--config", str(path)]) == 3
    err = capsys.readouterr().err
    assert f"cannot open the database of {path}" in err and "Traceback" not in err


def where(argv: list[str], env: dict[str, str]) -> tuple[str, str]:
    args: argparse.Namespace = build_parser().parse_args(["quarantine", "list", *argv])
    with endpoint(args, env) as found:
        return found.url, found.token


def test_the_order_a_command_picks_its_gatekeeper_in(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    with pytest.raises(CommandError, match="gatekeeper login"):
        where([], home)
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    save_login(Login("http://gk.example:5000", "alice", "stored", later), home)
    assert load_login(home) is not None
    assert (tmp_path / ".config/gatekeeper/login.json").stat().st_mode & 0o777 == 0o600
    assert where([], home) == ("http://gk.example:5000", "stored")
    assert where(["--token", "t"], home) == ("http://gk.example:5000", "t")
    other = {**home, "GATEKEEPER_ADMIN_URL": "http://other:5000"}
    with pytest.raises(CommandError, match="no gatekeeper to act on"):
        where([], other)  # the stored token is for another gatekeeper: never sent there
    assert where(["--url", "http://other:5000", "--token", "t"], home)[0] == "http://other:5000"
    with pytest.raises(CommandError, match="not both"):
        where(["--config", "x.toml", "--url", "http://other:5000"], home)
    earlier = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    save_login(Login("http://gk.example:5000", "alice", "stored", earlier), home)
    with pytest.raises(CommandError, match=r"expired .* run `gatekeeper login` again"):
        where([], home)
