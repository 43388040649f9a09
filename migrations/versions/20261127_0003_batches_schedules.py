"""batches and schedules: batch (grid x seeds over a base spec), batch_cell (its jobs, unique per config
hash), schedule (cron + time zone + batch template); unique (schedule_id, fire_time) on batch

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 23:17:21.034379+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import service.db.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedule",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "template",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("next_fire_at", service.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", service.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_fire_status", sa.String(length=16), nullable=True),
        sa.Column("last_fire_error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["api_token.id"],
            name=op.f("fk_schedule_created_by_api_token"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule")),
        sa.UniqueConstraint("name", name=op.f("uq_schedule_name")),
    )
    op.create_index("ix_schedule_enabled_next_fire_at", "schedule", ["enabled", "next_fire_at"], unique=False)
    op.create_table(
        "batch",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "cells",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("teacher_job_id", sa.Uuid(), nullable=True),
        sa.Column("schedule_id", sa.Uuid(), nullable=True),
        sa.Column("fire_time", service.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'stopped', 'cancelled')", name=op.f("ck_batch_status")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["api_token.id"], name=op.f("fk_batch_created_by_api_token"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["schedule.id"], name=op.f("fk_batch_schedule_id_schedule"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["teacher_job_id"], ["job.id"], name=op.f("fk_batch_teacher_job_id_job"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_batch_idempotency_key")),
        sa.UniqueConstraint("schedule_id", "fire_time", name=op.f("uq_batch_schedule_id_fire_time")),
    )
    op.create_index("ix_batch_created_at_id", "batch", ["created_at", "id"], unique=False)
    op.create_table(
        "batch_cell",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("config", sa.String(length=200), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batch.id"], name=op.f("fk_batch_cell_batch_id_batch"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_batch_cell_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_cell")),
        sa.UniqueConstraint("batch_id", "config_hash", name=op.f("uq_batch_cell_batch_id_config_hash")),
        sa.UniqueConstraint("job_id", name=op.f("uq_batch_cell_job_id")),
    )


def downgrade() -> None:
    op.drop_table("batch_cell")
    op.drop_index("ix_batch_created_at_id", table_name="batch")
    op.drop_table("batch")
    op.drop_index("ix_schedule_enabled_next_fire_at", table_name="schedule")
    op.drop_table("schedule")
