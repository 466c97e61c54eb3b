"""Cluster-wide scheduler: re-verification runs with a cursor, due times of periodic tasks,
SQLite's scheduler lease, and advisory mirror validators.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rescan_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("pattern", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("spread_seconds", sa.Float(), nullable=False),
        sa.Column("cursor_repository", sa.String(255)),
        sa.Column("cursor_digest", sa.String(140)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("note", sa.Text()),
    )
    op.create_index(
        "uq_rescan_runs_running",
        "rescan_runs",
        ["state"],
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_table(
        "scheduler_marks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("due_at", TS, nullable=False),
    )
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "advisory_mirrors",
        sa.Column("url_key", sa.String(64), primary_key=True),
        sa.Column("display_url", sa.Text(), nullable=False),
        sa.Column("etag", sa.Text()),
        sa.Column("last_modified", sa.Text()),
        sa.Column("checked_at", TS),
        sa.Column("imported_at", TS),
        sa.Column("data_version", sa.BigInteger()),
        sa.Column("last_error", sa.Text()),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("advisory_mirrors")
    op.drop_table("scheduler_leases")
    op.drop_table("scheduler_marks")
    op.drop_index("uq_rescan_runs_running", table_name="rescan_runs")
    op.drop_table("rescan_runs")
