"""Drop the (name, last) index on metric_summaries.

PostgreSQL, before statistics exist for freshly filled tables, preferred it for the
experiments -> metric summary join of a listing sorted by a metric, scanning every summary of
that metric once per experiment (0.6 s instead of 0.03 s for 2,000 experiments). The primary
key (experiment_key, name) serves that join; sorting by the metric needs no index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_metric_summaries_name_last", table_name="metric_summaries")


def downgrade() -> None:
    op.create_index("ix_metric_summaries_name_last", "metric_summaries", ["name", "last"])
