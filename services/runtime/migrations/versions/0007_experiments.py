"""experiments: each experiment split's definition and its one decision, and one row per
profile assigned to it (its path, when its window closes, when it converted)

Revision ID: 0007_experiments
Revises: 0006_erasures
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007_experiments"
down_revision: str | None = "0006_erasures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runtime"


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("journey_id", sa.String(64), primary_key=True),
        sa.Column("step_id", sa.Text, primary_key=True),
        sa.Column("definition", JSONB, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="collecting"),
        sa.Column("winner", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text),
        sa.Column("result", JSONB),
        schema=SCHEMA,
    )
    op.create_index(
        "experiments_collecting", "experiments", ["workspace_id"], schema=SCHEMA,
        postgresql_where=sa.text("status = 'collecting'"),
    )  # fmt: skip
    op.create_table(
        "experiment_members",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("journey_id", sa.String(64), primary_key=True),
        sa.Column("step_id", sa.Text, primary_key=True),
        sa.Column("profile_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("entry", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_ends", sa.DateTime(timezone=True), nullable=False),
        sa.Column("converted_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    # A batch looks up the open windows of its profiles.
    op.create_index(
        "experiment_members_open", "experiment_members", ["workspace_id", "profile_id"],
        schema=SCHEMA, postgresql_where=sa.text("converted_at IS NULL"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("experiment_members", schema=SCHEMA)
    op.drop_table("experiments", schema=SCHEMA)
