"""Imports record when their re-evaluation was done, so a crash in between is made good.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("advisory_data_versions") as batch:
        batch.add_column(sa.Column("settled_at", sa.DateTime(timezone=True)))
    # Imports before this revision re-evaluated (or queued) in the importing process.
    op.execute("UPDATE advisory_data_versions SET settled_at = imported_at")


def downgrade() -> None:
    with op.batch_alter_table("advisory_data_versions") as batch:
        batch.drop_column("settled_at")
