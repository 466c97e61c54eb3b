"""PostgreSQL: reserving an upload slot is one statement (``gatekeeper_reserve_upload``), so
a POST records its session in one round trip instead of four (``BEGIN``, the owner's upsert,
the count-and-insert, ``COMMIT``; ``storage.uploads.reserve``). SQLite keeps the two
statements (no functions there; a round trip is a call into the library).

The function runs the same two statements: the owner's row first (its lock serialises one
identity's reservations across replicas), then the count-and-insert as a statement of its
own. In a PL/pgSQL function under READ COMMITTED each statement takes a fresh snapshot, so
the count sees every reservation committed while the first statement waited for the lock;
one SQL statement (a CTE) would count on the snapshot taken before the wait, and two POSTs
could both take the last slot. What counts is ``storage.uploads._HELD``'s condition, spelled
here in SQL: keep the two alike (tests/unit/proxy/test_upload_sessions.py runs every case of
the cap on PostgreSQL through this function).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

RESERVE = """
CREATE OR REPLACE FUNCTION gatekeeper_reserve_upload(
    p_owner varchar, p_repository varchar, p_session varchar, p_moment timestamptz,
    p_replica varchar, p_used_since timestamptz, p_heard_since timestamptz, p_limit integer
) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    reserved bigint;
BEGIN
    INSERT INTO upload_owners (owner, touched) VALUES (p_owner, p_moment)
    ON CONFLICT (owner) DO UPDATE SET touched = EXCLUDED.touched;
    INSERT INTO upload_sessions (owner, repository, session, last_seen, replica)
    SELECT p_owner, p_repository, p_session, p_moment, p_replica
    WHERE (
        SELECT count(*) FROM upload_sessions AS held
        WHERE held.owner = p_owner
          AND held.last_seen >= p_used_since
          AND (
            held.replica IS NULL
            OR EXISTS (
              SELECT 1 FROM replicas
              WHERE replicas.id = held.replica AND replicas.seen_at >= p_heard_since
            )
          )
    ) < p_limit
    RETURNING id INTO reserved;
    RETURN reserved;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS gatekeeper_reserve_upload("
            "varchar, varchar, varchar, timestamptz, varchar, timestamptz, timestamptz, integer)"
        )
