"""Token signing keys that are never stored in plaintext, and the blobs just uploaded (issue 13).

``token_signing_keys``: the public half in the clear, the private half sealed under a
key-encryption key that lives outside the database, several keys at once so a rotation can
overlap. ``fresh_uploads``: blobs uploaded through the gatekeeper, which identities that may
push read back before a manifest lists them (``proxy/gate.py``).

The plaintext key of ``signing_keys`` is erased, not converted (the migration has no
key-encryption key to seal it with): on SQLite with ``secure_delete`` on, so its bytes are
overwritten rather than left in free pages. Tokens it signed (valid for minutes) are refused
after the upgrade; clients log in again, as they do when a token expires.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "token_signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("active_slot", sa.Integer(), nullable=True, unique=True),
        sa.Column("public_pem", sa.Text(), nullable=False),
        sa.Column("sealed_private", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.Column("verify_until", TS, nullable=True),
    )
    op.create_table(
        "fresh_uploads",
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(140), primary_key=True),
        sa.Column("uploaded_at", TS, nullable=False),
    )
    op.create_index("ix_fresh_uploads_uploaded_at", "fresh_uploads", ["uploaded_at"])
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")
        op.execute("UPDATE signing_keys SET private_pem = ''")
        op.execute("DELETE FROM signing_keys")
    op.drop_table("signing_keys")


def downgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("private_pem", sa.String(4096), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.drop_table("fresh_uploads")
    op.drop_table("token_signing_keys")
