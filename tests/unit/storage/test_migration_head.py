"""``upgrade`` skips Alembic when the schema is at the newest migration shipped, which it reads
from the migration files' names (issue 15: Alembic, Mako and the scripts kept about 11 MiB
resident in every process for nothing); the names must therefore say the chain exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from storage.db import MIGRATIONS_DIR, create_engine, head_revision, shipped_head, upgrade
from tests.support.database import Database

ROOT = Path(__file__).resolve().parents[3]


def test_each_file_is_named_for_its_revision_and_the_chain_is_linear() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config)
    files = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py") if p.name[0] != "_")
    revisions = sorted(scripts.walk_revisions(), key=lambda script: script.revision)
    assert [Path(script.path).name[:4] for script in revisions] == [r.revision for r in revisions]
    assert [f"{int(r.revision) - 1:04d}" for r in revisions[1:]] == [
        r.down_revision for r in revisions[1:]
    ]
    assert len(files) == len(revisions)
    assert scripts.get_heads() == [head_revision()] == [shipped_head()]


async def test_a_schema_behind_is_still_upgraded(fresh_db: Database) -> None:
    engine = create_engine(fresh_db.url)
    try:
        before = f"{int(shipped_head()) - 1:04d}"
        await upgrade(engine, before)
        await upgrade(engine)
        async with engine.connect() as conn:
            version = await conn.execute(text("SELECT version_num FROM alembic_version"))
            assert list(version.scalars()) == [shipped_head()]
    finally:
        await engine.dispose()


async def test_a_current_schema_is_not_upgraded_through_alembic(fresh_db: Database) -> None:
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    script = (
        "import asyncio, sys\n"
        "from storage.db import create_engine, upgrade\n"
        f"engine = create_engine({fresh_db.url!r})\n"
        "asyncio.run(upgrade(engine))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('alembic', 'mako'))))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
