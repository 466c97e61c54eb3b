"""A fair job queue: who caused each job, whether a pull waits for it, and when each identity
and repository was last served.

Jobs queued before this revision are attributed to ``gatekeeper:unattributed`` (one share
between them) and wait with no pull.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column(
                "identity",
                sa.String(255),
                nullable=False,
                server_default="gatekeeper:unattributed",
            )
        )
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(
        "ix_jobs_fair", "jobs", ["state", "identity", "repository", "run_after", "priority"]
    )
    op.create_table(
        "job_turns",
        sa.Column("identity", sa.String(255), primary_key=True),
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_turns")
    op.drop_index("ix_jobs_fair", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("priority")
        batch.drop_column("identity")
