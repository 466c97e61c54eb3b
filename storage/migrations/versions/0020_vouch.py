"""What the gatekeeper vouches for: its own signing key, a hash chain over the access log with
signed checkpoints, and the verification summaries it pushes.

- ``gatekeeper_signing_keys``: the key summaries and checkpoints are signed with, its private
  half sealed under the key-encryption key (``proxy/attest/keys.py``); never deleted.
- ``access_log.chain``, ``seq``, ``row_hash``: each row's place in its writer's chain and the
  hash over its content and the previous row's hash (``proxy/attest/chain.py``). Rows written
  before this revision have none; ``audit_legacy`` records the last of them, so a row without
  a chain above it is one somebody inserted.
- ``audit_checkpoints``: signed (chain, position, hash, time) statements, kept for ever.
- ``attestations``: verification summaries made for images and whether they reached the
  registry (pushed with retries, ``proxy/attest/summaries.py``).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gatekeeper_signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("active_slot", sa.Integer, unique=True),
        sa.Column("public_pem", sa.Text, nullable=False),
        sa.Column("sealed_private", sa.LargeBinary, nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(sa.Column("chain", sa.String(64)))
        batch.add_column(sa.Column("seq", sa.BigInteger))
        batch.add_column(sa.Column("row_hash", sa.String(64)))
    op.create_index("ix_access_log_chain", "access_log", ["chain", "seq"])
    op.create_table(
        "audit_legacy",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("max_id", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO audit_legacy (id, max_id) SELECT 1, COALESCE(MAX(id), 0) FROM access_log"
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("chain", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("time", TS, nullable=False),
        sa.Column("envelope", sa.Text),
        sa.UniqueConstraint("chain", "seq", name="uq_audit_checkpoints_chain_seq"),
    )
    op.create_table(
        "attestations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("bundle", sa.Text, nullable=False),
        sa.Column("referrer", sa.String(140)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_attestations_image", "attestations", ["repository", "digest", "id"])
    op.create_index("ix_attestations_due", "attestations", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("attestations")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_legacy")
    op.drop_index("ix_access_log_chain", "access_log")
    with op.batch_alter_table("access_log") as batch:
        batch.drop_column("row_hash")
        batch.drop_column("seq")
        batch.drop_column("chain")
    op.drop_table("gatekeeper_signing_keys")
