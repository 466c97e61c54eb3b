"""OSV advisory store: records, their affected packages indexed by name, and data versions.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "advisory_data_versions",
        sa.Column("version", BigId, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", TS, nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
    )
    op.create_table(
        "advisories",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("modified", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("score", sa.Float()),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("data_version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "advisory_packages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "advisory_id",
            sa.String(128),
            sa.ForeignKey("advisories.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ecosystem", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
    )
    op.create_index("ix_advisory_packages_name", "advisory_packages", ["ecosystem", "name"])


def downgrade() -> None:
    op.drop_table("advisory_packages")
    op.drop_table("advisories")
    op.drop_table("advisory_data_versions")
