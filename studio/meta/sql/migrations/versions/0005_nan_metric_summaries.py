"""Metric summaries may hold NaN: last/min/max become nullable.

A series whose last value is NaN (or that is all NaN) is stored faithfully. SQLite stores a NaN
float as NULL, so the store writes NaN as NULL on every backend and reads NULL back as NaN.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("last", "min", "max")


def upgrade() -> None:
    with op.batch_alter_table("metric_summaries") as batch:
        for name in _COLUMNS:
            batch.alter_column(name, existing_type=sa.Double(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM metric_summaries WHERE last IS NULL OR min IS NULL OR max IS NULL")
    with op.batch_alter_table("metric_summaries") as batch:
        for name in _COLUMNS:
            batch.alter_column(name, existing_type=sa.Double(), nullable=False)
