"""The test suite's own database plumbing (tests/support/database.py): one query API for both
backends, fresh databases that are isolated and dropped, and the sqlite_only marker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.db import head_revision
from tests.support import database, postgres
from tests.support.database import Database, QueryError, as_datetime


def test_fetch_takes_named_parameters_and_returns_dicts(fresh_db: Database) -> None:
    database.migrate(fresh_db.url)
    rows = fresh_db.fetch(
        "SELECT version_num FROM alembic_version WHERE version_num = :v", {"v": head_revision()}
    )
    assert rows == [{"version_num": head_revision()}]
    assert fresh_db.fetch("SELECT version_num FROM alembic_version WHERE 1 = :no", {"no": 0}) == []


def test_a_missing_table_is_a_query_error_on_either_backend(fresh_db: Database) -> None:
    with pytest.raises(QueryError):
        fresh_db.fetch("SELECT * FROM access_log")


async def test_fetch_works_inside_an_async_test(fresh_db: Database) -> None:
    # The test's event loop is running: the query gets a loop in a thread of its own.
    assert fresh_db.fetch("SELECT 1 AS one") == [{"one": 1}]


def test_the_session_backend_is_the_one_chosen(fresh_db: Database) -> None:
    assert fresh_db.backend == database.backend()
    assert (fresh_db.path is None) == (fresh_db.backend == "postgresql")


def test_fresh_postgres_databases_are_separate_and_dropped_after(
    databases: database.Databases, postgres_db: Database
) -> None:
    mark = databases.created()
    other = databases.fresh_postgres()
    assert other.url != postgres_db.url
    database.migrate(other.url)
    assert postgres_db.fetch("SELECT to_regclass('access_log') AS t") == [{"t": None}]
    name = other.url.rsplit("/", 1)[1]
    databases.drop_since(mark)
    listed = postgres_db.fetch("SELECT datname FROM pg_database WHERE datname = :n", {"n": name})
    assert listed == []


def test_times_read_the_same_from_either_driver() -> None:
    text = as_datetime("2026-01-02 03:04:05.000006")
    assert as_datetime(text) is text and text.microsecond == 6


@pytest.mark.sqlite_only(reason="checks the marker itself")
def test_sqlite_only_tests_run_only_on_sqlite(fresh_db: Database) -> None:
    assert database.backend() == "sqlite" and fresh_db.path is not None


def test_a_cluster_stops_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    """A pytest run killed with SIGKILL must not leave its private PostgreSQL running."""
    if not postgres.available():
        pytest.fail("PostgreSQL is not installed (Debian package postgresql)")
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from tests.support.postgres import start_postgres; "
            "print(start_postgres(Path(sys.argv[1])).pid, flush=True); time.sleep(600)",
            str(tmp_path / "pg"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert starter.stdout is not None
        postmaster = int(starter.stdout.readline())
        os.kill(postmaster, 0)  # running
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(postmaster, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        pytest.fail(f"postmaster {postmaster} still running after its starter was killed")
    finally:
        starter.kill()


def test_migrated_databases_are_at_head_and_separate(
    databases: database.Databases, tmp_path: Path
) -> None:
    """The copies of the migrated template: at the head revision, and each its own (a row
    written to one is in no other, nor in the next copy)."""
    first = databases.fresh(tmp_path / "a", migrated=True)
    second = databases.fresh(tmp_path / "b", migrated=True)
    assert first.url != second.url
    query = "SELECT version_num FROM alembic_version"
    assert first.fetch(query) == second.fetch(query) == [{"version_num": head_revision()}]
    first.execute(
        "INSERT INTO tags (repository, tag, digest, updated_at) "
        "VALUES ('a', 'b', 'c', '2026-12-08 00:00:00')"
    )
    assert len(first.fetch("SELECT * FROM tags")) == 1
    assert second.fetch("SELECT * FROM tags") == []
    third = databases.fresh(tmp_path / "c", migrated=True)
    assert third.fetch("SELECT * FROM tags") == []


def test_a_db_fixture_gets_a_migrated_database(fresh_db: Database, db: object) -> None:
    assert fresh_db.fetch("SELECT version_num FROM alembic_version") == [
        {"version_num": head_revision()}
    ]
