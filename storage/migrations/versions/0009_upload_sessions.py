"""Open blob upload sessions per identity, for the per-identity cap.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "upload_owners",
        sa.Column("owner", sa.String(255), primary_key=True),
        sa.Column("touched", TS, nullable=False),
    )
    op.create_table(
        "upload_sessions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("session", sa.String(128)),
        sa.Column("last_seen", TS, nullable=False),
    )
    op.create_index("ix_upload_sessions_owner", "upload_sessions", ["owner", "last_seen"])
    op.create_index("ix_upload_sessions_session", "upload_sessions", ["repository", "session"])


def downgrade() -> None:
    op.drop_index("ix_upload_sessions_session", "upload_sessions")
    op.drop_index("ix_upload_sessions_owner", "upload_sessions")
    op.drop_table("upload_sessions")
    op.drop_table("upload_owners")
