"""Stops that record a status and reason (a sweep's pruner: `pruned`), and the creating sweep.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("experiments", sa.Column("stop_status", sa.String(16), nullable=True))
    op.add_column("experiments", sa.Column("stop_reason", sa.Text(), nullable=True))
    op.add_column("experiments", sa.Column("sweep", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("sweep")
        batch.drop_column("stop_reason")
        batch.drop_column("stop_status")
