"""The web console (``proxy/ui``): its sign-in sessions, and the indexes its pages read by.

Sessions live in the database so every replica knows them and a sign-out ends them everywhere;
only a hash of the cookie's secret is stored. The indexes serve the console's keyset pages:
the access-log search walks ``(time, id)`` newest first within an action, decision or digest
(repository and identity already have theirs), the quarantine queue walks verdicts by state
and time, and the overview's chart reads verdict events by time.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

INDEXES = (
    ("ix_access_log_action", "access_log", ["action", "time"]),
    ("ix_access_log_decision", "access_log", ["decision", "time"]),
    ("ix_access_log_digest", "access_log", ["digest", "time"]),
    ("ix_verdicts_state_updated", "verdicts", ["state", "updated_at"]),
    ("ix_verdicts_updated", "verdicts", ["updated_at"]),
    ("ix_verdict_events_time", "verdict_events", ["time"]),
)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column(
            "identity_id",
            BigId,
            sa.ForeignKey("identities.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
    )
    op.create_index("ix_console_sessions_identity", "console_sessions", ["identity_id"])
    op.create_index("ix_console_sessions_last_seen", "console_sessions", ["last_seen"])
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_console_sessions_last_seen", table_name="console_sessions")
    op.drop_index("ix_console_sessions_identity", table_name="console_sessions")
    op.drop_table("console_sessions")
