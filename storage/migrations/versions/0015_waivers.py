"""Waivers made by admins at run time (admin API, ``gatekeeper quarantine waive``), kept
beside the settings file's: a finding accepted within a repository pattern, by whom, why and
until when; withdrawn ones stay, with who withdrew them and why.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "waivers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("finding", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("withdrawn_at", TS),
        sa.Column("withdrawn_by", sa.String(255)),
        sa.Column("withdraw_reason", sa.Text()),
    )
    op.create_index("ix_waivers_withdrawn_at", "waivers", ["withdrawn_at"])


def downgrade() -> None:
    op.drop_index("ix_waivers_withdrawn_at", table_name="waivers")
    op.drop_table("waivers")
