"""VEX documents accepted at run time (admin API, signed referrers of images): the OpenVEX
JSON, where it applies, who added it (and for a referrer, the image it is about and the key
that signed it); withdrawn ones stay, with who withdrew them and why.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vex_documents",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(100)),
        sa.Column("referrer", sa.String(100)),
        sa.Column("signer", sa.String(100)),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("added_by", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("withdrawn_at", TS),
        sa.Column("withdrawn_by", sa.String(255)),
        sa.Column("withdraw_reason", sa.Text()),
    )
    op.create_index("ix_vex_documents_withdrawn_at", "vex_documents", ["withdrawn_at"])
    op.create_index("ix_vex_documents_referrer", "vex_documents", ["scope", "referrer"])


def downgrade() -> None:
    op.drop_index("ix_vex_documents_referrer", table_name="vex_documents")
    op.drop_index("ix_vex_documents_withdrawn_at", table_name="vex_documents")
    op.drop_table("vex_documents")
