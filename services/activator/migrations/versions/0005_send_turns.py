"""send_turns: each rate-limited connector's next free send turn, shared by all replicas

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "activator"


def upgrade() -> None:
    op.create_table(
        "send_turns",
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.String(64), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=False),
        sa.Column("first_at", sa.Double(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "connector_id", name=op.f("pk_send_turns")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("send_turns", schema=SCHEMA)
