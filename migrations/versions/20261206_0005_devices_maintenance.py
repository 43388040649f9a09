"""worker devices (owned, in use) and CPU threads per trainer; maintenance (when each housekeeping task
last ran)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import service.db.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_LIST = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("worker") as batch:
        batch.add_column(sa.Column("devices", JSON_LIST, server_default=sa.text("'[]'"), nullable=False))
        batch.add_column(
            sa.Column("devices_in_use", JSON_LIST, server_default=sa.text("'[]'"), nullable=False)
        )
        batch.add_column(sa.Column("cpus", sa.Integer(), nullable=True))
    op.create_table(
        "maintenance",
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("every_seconds", sa.Float(), nullable=False),
        sa.Column("last_run_at", service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("task", name=op.f("pk_maintenance")),
    )


def downgrade() -> None:
    op.drop_table("maintenance")
    with op.batch_alter_table("worker") as batch:
        batch.drop_column("cpus")
        batch.drop_column("devices_in_use")
        batch.drop_column("devices")
