"""timers: pending, fired and cancelled, with a partial index for claiming due ones

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "scheduler"


def _time(name: str, **kwargs: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "timers",
        sa.Column("timer_id", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("profile_id", sa.Text),
        sa.Column("journey_id", sa.Text),
        sa.Column("kind", sa.String(32)),
        _time("due_at"),
        sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("state", sa.String(16), nullable=False),
        _time("created_at", nullable=False, server_default=sa.func.now()),
        _time("fired_at"),
        _time("cancelled_at"),
        sa.CheckConstraint("state IN ('pending', 'fired', 'cancelled')", name="state"),
        sa.CheckConstraint("state <> 'pending' OR due_at IS NOT NULL", name="pending_has_due_at"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_timers_pending_due",
        "timers",
        ["due_at", "timer_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_timers_settled",
        "timers",
        [sa.text("coalesce(fired_at, cancelled_at)")],
        schema=SCHEMA,
        postgresql_where=sa.text("state <> 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("timers", schema=SCHEMA)
