"""An admin's re-quarantine holds until an admin releases the image.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("held_by", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("held_by")
