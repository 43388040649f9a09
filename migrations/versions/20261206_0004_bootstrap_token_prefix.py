"""api_token: the bootstrap token's row keeps no part of the token (its prefix becomes "(bootstrap)", held by
the CHECK constraint ck_api_token_bootstrap_prefix)

Rows written before kept the first 12 characters of DAIK_BOOTSTRAP_TOKEN, a secret a person chose; the
upgrade overwrites them. The downgrade drops the constraint only: the overwritten characters are gone, and
nothing needs them (a token is recognised by its SHA-256).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the values of service.db.models.BOOTSTRAP_TOKEN_NAME / BOOTSTRAP_TOKEN_PREFIX when this revision was made
NAME = "bootstrap"
PREFIX = "(bootstrap)"


def upgrade() -> None:
    api_token = sa.table("api_token", sa.column("name", sa.String), sa.column("prefix", sa.String))
    op.execute(api_token.update().where(api_token.c.name == NAME).values(prefix=PREFIX))
    with op.batch_alter_table("api_token") as batch:  # SQLite: the table is copied with the constraint
        batch.create_check_constraint(
            op.f("ck_api_token_bootstrap_prefix"), f"name <> '{NAME}' OR prefix = '{PREFIX}'"
        )


def downgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.drop_constraint(op.f("ck_api_token_bootstrap_prefix"), type_="check")
