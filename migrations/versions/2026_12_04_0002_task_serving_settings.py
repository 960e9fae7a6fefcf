"""Add per-task serving settings (promotion policy, pinning, a prediction counter) and
per-dataset stats.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("stats", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column(
                "promotion_policy", sa.String(length=20), nullable=False, server_default="always"
            )
        )
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("predictions_count", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("predictions_count")
        batch.drop_column("pinned")
        batch.drop_column("promotion_policy")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("stats")
