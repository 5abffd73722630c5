"""Queue: resource needs as plain columns (so `claim` tests the fit in SQL) and the claim index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAMES = ("cpus", "gpus", "ram", "hdd")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0.0
    return float(value)


def upgrade() -> None:
    for name in NAMES:
        op.add_column(
            "experiments",
            sa.Column(f"need_{name}", sa.Double(), nullable=False, server_default="0"),
        )
    op.create_index(
        "ix_experiments_queue_status_time_added", "experiments", ["queue", "status", "time_added"]
    )

    # Backfill from the `resources` JSON of experiments recorded before this revision.
    experiments = sa.table(
        "experiments",
        sa.column("key", sa.String),
        sa.column("resources", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        *(sa.column(f"need_{name}", sa.Double) for name in NAMES),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(experiments.c.key, experiments.c.resources)).all()
    for key, resources in rows:
        if not resources:
            continue
        values = {f"need_{name}": _number(resources.get(name)) for name in NAMES}
        bind.execute(experiments.update().where(experiments.c.key == key).values(**values))


def downgrade() -> None:
    op.drop_index("ix_experiments_queue_status_time_added", table_name="experiments")
    with op.batch_alter_table("experiments") as batch:
        for name in NAMES:
            batch.drop_column(f"need_{name}")
