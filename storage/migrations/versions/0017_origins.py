"""Where an image comes from: ``verdicts.pushed`` (pushed through the gatekeeper, a fact) and
``verdicts.origin`` (``local``, or the name of the remote the registry fetched it from, derived
from the settings' ``[[remotes]]`` and brought up to date at each start).

Images verified before this version were pushed through the gatekeeper exactly when their
first verdict event says so (``ensure_pending`` records the cause that created the verdict);
their origin is ``local`` until the first start with this version derives it.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("origin", sa.String(64), nullable=False, server_default="local"))
        batch.add_column(
            sa.Column("pushed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE verdicts SET pushed = true WHERE EXISTS (SELECT 1 FROM verdict_events e "
        "WHERE e.repository = verdicts.repository AND e.digest = verdicts.digest "
        "AND e.event = 'pending' AND e.reason = 'pushed')"
    )


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("pushed")
        batch.drop_column("origin")
