"""Initial schema: experiments, artifacts, status events, live output, metric summaries.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("args", JSON, nullable=False),
        sa.Column("module", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("returncode", sa.Integer(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("params", JSON, nullable=False),
        sa.Column("env", JSON, nullable=False),
        sa.Column("python_version", sa.String(64), nullable=True),
        sa.Column("pythonenv", JSON, nullable=False),
        sa.Column("python_pkgs", JSON, nullable=False),
        sa.Column("git", JSON, nullable=False),
        sa.Column("host", JSON, nullable=False),
        sa.Column("resources", JSON, nullable=False),
        sa.Column("metric", sa.String(255), nullable=True),
        sa.Column("metric_value", sa.Double(), nullable=True),
        sa.Column("max_duration", sa.Double(), nullable=True),
        sa.Column("lifetime", sa.Double(), nullable=True),
        sa.Column("time_added", sa.Double(), nullable=False),
        sa.Column("time_started", sa.Double(), nullable=True),
        sa.Column("time_last_checkpoint", sa.Double(), nullable=True),
        sa.Column("time_finished", sa.Double(), nullable=True),
        sa.Column("heartbeat", sa.Double(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("lease_expires", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_experiments"),
    )
    op.create_index("ix_experiments_time_added", "experiments", ["time_added"])
    op.create_index("ix_experiments_project_time_added", "experiments", ["project", "time_added"])
    op.create_index("ix_experiments_owner_time_added", "experiments", ["owner", "time_added"])
    op.create_index("ix_experiments_status_time_added", "experiments", ["status", "time_added"])
    op.create_index("ix_experiments_metric_value", "experiments", ["metric_value"])
    op.create_index(
        "ix_experiments_status_lease_expires", "experiments", ["status", "lease_expires"]
    )

    op.create_table(
        "artifacts",
        sa.Column("experiment_key", sa.String(255), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("mutable", sa.Boolean(), nullable=False),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("tree", sa.String(128), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"],
            name="fk_artifacts_experiment_key_experiments", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_key", "tag", name="pk_artifacts"),
    )
    op.create_index("ix_artifacts_tree", "artifacts", ["tree"])

    op.create_table(
        "status_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("experiment_key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"],
            name="fk_status_events_experiment_key_experiments", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_status_events"),
    )
    op.create_index(
        "ix_status_events_experiment_key_id", "status_events", ["experiment_key", "id"]
    )

    op.create_table(
        "output_chunks",
        sa.Column("experiment_key", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"],
            name="fk_output_chunks_experiment_key_experiments", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_key", "attempt", "seq", name="pk_output_chunks"),
    )

    op.create_table(
        "metric_summaries",
        sa.Column("experiment_key", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("last", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("updated", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_key"], ["experiments.key"],
            name="fk_metric_summaries_experiment_key_experiments", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_key", "name", name="pk_metric_summaries"),
    )
    op.create_index("ix_metric_summaries_name_last", "metric_summaries", ["name", "last"])


def downgrade() -> None:
    for table in ("metric_summaries", "output_chunks", "status_events", "artifacts", "experiments"):
        op.drop_table(table)
