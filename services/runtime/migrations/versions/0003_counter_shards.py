"""counters in shards: concurrent batches add to different rows instead of queueing on one

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runtime"


def upgrade() -> None:
    op.add_column(
        "counters",
        sa.Column("shard", sa.SmallInteger, nullable=False, server_default="0"),
        schema=SCHEMA,
    )
    op.drop_constraint("pk_counters", "counters", schema=SCHEMA)
    op.create_primary_key(
        "pk_counters", "counters", ["workspace_id", "journey_id", "version", "key", "shard"],
        schema=SCHEMA,
    )  # fmt: skip


def downgrade() -> None:
    op.execute(
        "DELETE FROM runtime.counters WHERE shard <> 0"  # their sums are lost with the shards
    )
    op.drop_constraint("pk_counters", "counters", schema=SCHEMA)
    op.drop_column("counters", "shard", schema=SCHEMA)
    op.create_primary_key(
        "pk_counters", "counters", ["workspace_id", "journey_id", "version", "key"],
        schema=SCHEMA,
    )  # fmt: skip
