"""Crash safety: one access-log row per request id, and replicas that hold upload sessions.

- ``access_log.request_id`` becomes unique, so rows replayed from a replica's spool after a
  crash, or a batch retried after a commit whose answer was lost, are inserted once
  (``ON CONFLICT DO NOTHING``). Exact duplicates a lost commit answer may already have left
  are removed first (the lowest id of each request id is kept).
- ``replicas``: each running gatekeeper's heartbeat; ``upload_sessions.replica`` names the
  replica that served a session last, so a session of a replica that is gone stops counting
  against its owner's cap at once instead of after the idle timeout.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute(
        "DELETE FROM access_log WHERE id IN ("
        " SELECT id FROM (SELECT id, row_number() OVER"
        " (PARTITION BY request_id ORDER BY id) AS n FROM access_log) AS numbered"
        " WHERE n > 1)"
    )
    op.create_index("uq_access_log_request_id", "access_log", ["request_id"], unique=True)
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("seen_at", TS, nullable=False),
    )
    with op.batch_alter_table("upload_sessions") as batch:
        batch.add_column(sa.Column("replica", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("upload_sessions") as batch:
        batch.drop_column("replica")
    op.drop_table("replicas")
    op.drop_index("uq_access_log_request_id", "access_log")
