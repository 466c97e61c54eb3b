"""A tamper-evident access log (issue 18), on SQLite and PostgreSQL (``--db``).

Requests go through a real gatekeeper in front of the real registry; it stops cleanly (a
signed checkpoint). Then the database is edited as someone with write access to it would:
a row changed, a row deleted, a row inserted. ``gatekeeper audit verify``, run as an operator
runs it, must fail each time and name the row; the export verifies offline with only the
public key the gatekeeper serves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e


def _verify(gk: Gatekeeper, *args: str) -> tuple[int, str]:
    done = run_cli(gk, "audit", "verify", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


@pytest.fixture
def stopped(registry: Registry, tmp_path: Path) -> Gatekeeper:
    """A gatekeeper that served some requests and stopped (its checkpoint signed)."""
    gk = make_gatekeeper(tmp_path / "gk", registry.url)
    try:
        for n in range(6):
            assert httpx.get(f"{gk.url}/v2/").status_code == 200
            httpx.get(f"{gk.url}/v2/audit/app{n}/manifests/latest")
        pem = httpx.get(f"{gk.url}/keys/gatekeeper.pem")
        assert pem.status_code == 200 and "BEGIN PUBLIC KEY" in pem.text
        listed = httpx.get(f"{gk.url}/keys/gatekeeper.json").json()
        assert listed["keys"][0]["active"] and listed["keys"][0]["pem"] == pem.text
        (tmp_path / "served.pem").write_text(pem.text)
    finally:
        gk.stop()
    return gk


def test_an_untouched_log_verifies_in_the_database_and_offline(
    stopped: Gatekeeper, tmp_path: Path
) -> None:
    gk = stopped
    # A command that runs the admin API in-process writes its rows into a chain of its own.
    settings = tmp_path / "gatekeeper.toml"
    settings.write_text("")  # the database and the rest come from the environment
    listed = run_cli(gk, "quarantine", "list", "--config", str(settings))
    assert listed.returncode == 0, listed.stderr
    assert gk.database.fetch("SELECT COUNT(DISTINCT chain) AS n FROM access_log")[0]["n"] == 2
    code, out = _verify(gk)
    assert code == 0 and out.startswith("audit log verified: "), out
    assert " in 2 chains" in out, out
    assert "after the newest checkpoint" not in out, out  # the clean stop signed them all
    keys = run_cli(gk, "keys", "--gatekeeper")
    assert keys.returncode == 0, keys.stderr
    assert keys.stdout == (tmp_path / "served.pem").read_text()
    export = tmp_path / "audit.jsonl"
    done = run_cli(gk, "audit", "export", "--output", str(export))
    assert done.returncode == 0, done.stderr
    pem = tmp_path / "gatekeeper.pem"
    pem.write_text(keys.stdout)
    # Offline: no database at all, only the export and the public key.
    offline = {"GATEKEEPER_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/x.db"}
    done = run_cli(gk, "audit", "verify", "--export", str(export), "--key", str(pem), env=offline)
    assert done.returncode == 0, done.stdout + done.stderr
    # The export tampered with (one row's identity) fails offline too, naming the row.
    lines = export.read_text().splitlines()
    index, item = next(
        (i, json.loads(line)) for i, line in enumerate(lines) if '"type":"row"' in line
    )
    item["content"]["identity"] = "mallory"
    lines[index] = json.dumps(item)
    export.write_text("\n".join(lines) + "\n")
    done = run_cli(gk, "audit", "verify", "--export", str(export), "--key", str(pem), env=offline)
    assert done.returncode == 1
    assert f"row {item['id']} was changed" in done.stdout, done.stdout
    # Another key does not vouch for the checkpoints: nothing verifies with it.
    other = tmp_path / "other.pem"
    other.write_text(
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\n"
        "q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n"
        "-----END PUBLIC KEY-----\n"
    )
    done = run_cli(gk, "audit", "verify", "--export", str(export), "--key", str(other), env=offline)
    assert done.returncode == 1 and "does not verify" in done.stdout, done.stdout
    # Retention: every row is older than the cut, but only rows up to a signed checkpoint go,
    # and what is left verifies from it.
    cut = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    pruned = run_cli(gk, "audit", "prune", "--before", cut)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.count("deleted positions up to") == 2, pruned.stdout
    assert gk.database.fetch("SELECT COUNT(*) AS n FROM access_log")[0]["n"] == 0
    code, out = _verify(gk)
    assert code == 0 and "were pruned (verified from a checkpoint)" in out, out


def _rows(gk: Gatekeeper) -> list[dict[str, Any]]:
    return gk.database.fetch("SELECT * FROM access_log ORDER BY id")


def test_a_changed_row_is_named(stopped: Gatekeeper) -> None:
    gk = stopped
    victim = _rows(gk)[4]
    gk.database.execute(
        "UPDATE access_log SET identity = 'someone-else' WHERE id = :id", {"id": victim["id"]}
    )
    code, out = _verify(gk)
    assert code == 1
    assert out.startswith(f"audit log FAILED verification: row {victim['id']} was changed"), out


def test_a_deleted_row_is_named(stopped: Gatekeeper) -> None:
    gk = stopped
    rows = _rows(gk)
    gk.database.execute("DELETE FROM access_log WHERE id = :id", {"id": rows[3]["id"]})
    code, out = _verify(gk)
    assert code == 1
    assert f"deleted before row {rows[4]['id']} (after row {rows[2]['id']}" in out, out
    # Put back as it was, it verifies again.
    columns = ", ".join(rows[3])
    gk.database.execute(
        f"INSERT INTO access_log ({columns}) VALUES ({', '.join(':' + k for k in rows[3])})",
        rows[3],
    )
    assert _verify(gk)[0] == 0
    # The last row deleted: the signed checkpoint names a position no row has.
    gk.database.execute("DELETE FROM access_log WHERE id = :id", {"id": rows[-1]["id"]})
    code, out = _verify(gk)
    assert code == 1 and f"rows after row {rows[-2]['id']} were deleted" in out, out


def test_an_inserted_row_is_named(stopped: Gatekeeper) -> None:
    gk = stopped
    rows = _rows(gk)
    copy = {k: v for k, v in rows[2].items() if k not in ("id", "chain", "seq", "row_hash")}
    copy["request_id"] = "forged-" + str(copy["request_id"])[:40]
    columns = ", ".join(copy)
    gk.database.execute(
        f"INSERT INTO access_log ({columns}) VALUES ({', '.join(':' + k for k in copy)})", copy
    )
    forged = _rows(gk)[-1]
    code, out = _verify(gk)
    assert code == 1
    assert f"row {forged['id']} was inserted" in out, out
    # With a position and a hash copied from a real row: still named.
    gk.database.execute("DELETE FROM access_log WHERE id = :id", {"id": forged["id"]})
    copy.update(chain=rows[2]["chain"], seq=rows[2]["seq"], row_hash=rows[2]["row_hash"])
    copy["request_id"] = "forged2"
    columns = ", ".join(copy)
    gk.database.execute(
        f"INSERT INTO access_log ({columns}) VALUES ({', '.join(':' + k for k in copy)})", copy
    )
    forged = _rows(gk)[-1]
    code, out = _verify(gk)
    assert code == 1 and f"row {forged['id']} was inserted or reordered" in out, out
