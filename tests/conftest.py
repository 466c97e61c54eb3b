"""Shared fixtures: a real Distribution registry and a real gatekeeper process in front of it,
and the database backend every test runs on (``--db=sqlite|postgresql``)."""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from tests.support import cpu_report, database, postgres, zygote
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.registry import Registry, make_registry

DB_ENV = "GATEKEEPER_TEST_DB"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=database.BACKENDS,
        default=None,
        help=f"database backend for every gatekeeper and storage test (default: ${DB_ENV} "
        "or sqlite); postgresql runs a private cluster (initdb + pg_ctl) for the session",
    )
    parser.addoption(
        "--cpu-report",
        metavar="FILE",
        default=None,
        help="append each test phase's wall time and its process tree's CPU seconds to FILE "
        "(JSON lines; tests/support/cpu_report.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--db") or os.environ.get(DB_ENV) or "sqlite"
    if chosen not in database.BACKENDS:
        raise pytest.UsageError(f"{DB_ENV}={chosen!r}: expected one of {database.BACKENDS}")
    workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-test-db-"))
    database.configure(database.Databases(cast(database.Backend, chosen), workdir))
    config.stash[_WORKDIR] = workdir
    # Test gatekeepers and CLI calls fork from one process that has the product imported
    # (tests/support/zygote.py says why and what stays the same).
    zygote.configure(zygote.Zygote())
    report = config.getoption("--cpu-report")
    if report:
        config.pluginmanager.register(cpu_report.CpuReport(Path(report)), "cpu-report")


def pytest_unconfigure(config: pytest.Config) -> None:
    zygote.configure(None)
    databases = database.session()
    if databases is not None:
        databases.close()
        database.configure(None)
    workdir = config.stash.get(_WORKDIR, None)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


_WORKDIR = pytest.StashKey[Path]()


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {database.backend()}"


# Fixtures through which a test reaches a database; with tests/e2e they make up ``-m database``.
_DATABASE_FIXTURES = frozenset(
    {"fresh_db", "postgres_db", "databases", "gatekeeper_client", "gatekeeper", "registry"}
)
_E2E = Path(__file__).resolve().parent / "e2e"
_BACKEND_FIXTURES = frozenset({"fresh_db", "gatekeeper_client", "gatekeeper"})
"""Fixtures whose database follows ``--db``: a test using one is not ``own_database``."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that touches a database ``database`` (all of tests/e2e, and any test
    using a database fixture, directly or through its own fixtures), so a second pass on
    another backend can leave out the tests the backend cannot change (``-m database``).

    ``@pytest.mark.sqlite_only(reason=...)``: about SQLite itself (its file, WAL, locking),
    so skipped, with that reason, when the session runs on PostgreSQL.
    ``@pytest.mark.own_database(reason=...)``: an e2e test whose database does not follow
    ``--db`` (a benchmark command: SQLite outside pytest; replicas sharing ``postgres_db``),
    so the PostgreSQL pass would only repeat it; it may use no fixture that follows ``--db``."""
    _unique_node_ids(items)
    _require_unique_node_ids(items)
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("own_database") is not None:
            if fixtures & _BACKEND_FIXTURES:
                raise pytest.UsageError(f"{item.nodeid} is own_database but uses {fixtures}")
            continue
        if fixtures & _DATABASE_FIXTURES or _E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.database)
    if database.backend() == "sqlite":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Give each Schemathesis item its operation in its node id, as its name has.

    pytest 9.2 builds a function's node id from ``originalname`` plus its own parametrization;
    Schemathesis 4 passes the bare function name as ``originalname`` and puts the operation
    only in ``name``, so the admin API fuzz test's 19 operations all had one node id. A
    scheduler that keys work by node id (pytest-xdist) then ran one of them and silently
    dropped the other 18."""
    for item in items:
        original = getattr(item, "originalname", None)
        name = item.name
        if (
            original
            and name.startswith(original + "[")
            and name.endswith("]")
            and not item.nodeid.endswith(name)
            and item.parent is not None
        ):
            item._id = item.parent.id.child(original).with_params(name[len(original) + 1 : -1])


def _require_unique_node_ids(items: list[pytest.Item]) -> None:
    """Two tests with one node id: one of them would not run under xdist, silently."""
    counts = collections.Counter(item.nodeid for item in items)
    twice = sorted(nodeid for nodeid, n in counts.items() if n > 1)
    if twice:
        raise pytest.UsageError(f"tests share a node id: {twice}")


@pytest.fixture(scope="module", autouse=True)
def _drop_module_databases() -> Iterator[None]:
    """Databases handed out to module-scoped fixtures go when the module is done."""
    with database.scope():
        yield


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Databases a test made for itself go when it ends (module fixtures are set up before
    this one, so theirs are not dropped here)."""
    with database.scope():
        yield


@pytest.fixture(scope="session")
def databases() -> database.Databases:
    """The session's databases: ``fresh_postgres()`` serves tests that need PostgreSQL itself
    (replicas sharing one database) whatever the backend."""
    session = database.session()
    assert session is not None, "tests/conftest.py configures the databases"
    return session


@pytest.fixture
def postgres_db(databases: database.Databases) -> database.Database:
    """A fresh PostgreSQL database whatever the backend, for tests of PostgreSQL itself
    (replicas sharing one database); skipped where PostgreSQL is not installed."""
    if not postgres.available():
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    return databases.fresh_postgres()


_MIGRATING_FIXTURES = frozenset({"db", "gatekeeper_client"})
"""Fixtures that migrate their database to the head revision before the test sees it."""


@pytest.fixture
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> database.Database:
    """A fresh database on the session's backend: empty (the gatekeeper's migrations or the
    test's ``upgrade`` create the schema), or, for a test using a fixture that would migrate it
    anyway (``db``, ``gatekeeper_client``), a copy of one migrated to the head revision."""
    return database.fresh(tmp_path, migrated=bool(_MIGRATING_FIXTURES & set(request.fixturenames)))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry per test module; tests use distinct repository names to stay independent."""
    reg = make_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def gatekeeper(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    """The gatekeeper in front of ``registry``, streaming (no sendfile storage root)."""
    gk = make_gatekeeper(tmp_path_factory.mktemp("gatekeeper"), registry.url)
    yield gk
    gk.stop()


@pytest.fixture
def gk_workdir(tmp_path: Path) -> Path:
    return tmp_path / "gk"
