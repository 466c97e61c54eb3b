"""Verdicts, their history, findings, jobs and the per-layer result cache.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "verdicts",
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(140), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("policy", sa.String(100)),
        sa.Column("policy_version", sa.String(32)),
        sa.Column("data_versions", sa.JSON(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("released_by", sa.String(255)),
        sa.Column("release_reason", sa.Text()),
        sa.Column("release_expires", TS),
        sa.Column("decided_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_verdicts_digest", "verdicts", ["digest"])
    op.create_table(
        "verdict_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("time", TS, nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("old_state", sa.String(16)),
        sa.Column("new_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text()),
    )
    op.create_index("ix_verdict_events_image", "verdict_events", ["repository", "digest", "id"])
    op.create_table(
        "findings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("verifier", sa.String(100), nullable=False),
        sa.Column("rule_id", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
    )
    op.create_index("ix_findings_image", "findings", ["repository", "digest"])
    op.create_table(
        "jobs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", TS, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", TS),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_jobs_claim", "jobs", ["state", "run_after"])
    op.create_index("ix_jobs_image", "jobs", ["repository", "digest", "state"])
    op.create_table(
        "layer_results",
        sa.Column("layer_digest", sa.String(140), primary_key=True),
        sa.Column("verifier", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("layer_results", "jobs", "findings", "verdict_events", "verdicts"):
        op.drop_table(table)
