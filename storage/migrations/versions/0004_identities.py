"""Identities (users, robots), role bindings and the token-signing key.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "role_bindings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("identity_id", BigId, sa.ForeignKey("identities.id", ondelete="CASCADE")),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("pattern", sa.String(255), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_role_bindings_subject", "role_bindings", ["subject"])
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("private_pem", sa.String(4096), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("signing_keys", "role_bindings", "identities"):
        op.drop_table(table)
