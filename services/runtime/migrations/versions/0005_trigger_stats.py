"""what the runtime received of each event trigger's event, in shards like the counters

Revision ID: 0005_trigger_stats
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005_trigger_stats"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runtime"


def upgrade() -> None:
    op.create_table(
        "trigger_stats",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("trigger_id", sa.String(64), primary_key=True),
        sa.Column("shard", sa.SmallInteger, primary_key=True),
        sa.Column("received_total", sa.BigInteger, nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("schema_violations", sa.BigInteger, nullable=False),
        sa.Column("samples", JSONB, nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("trigger_stats", schema=SCHEMA)
