"""erasures: a tombstone per erased profile, so late events cannot bring it back; violation
samples recorded before they named their profile are dropped

Revision ID: 0006_erasures
Revises: 0005_trigger_stats
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_erasures"
down_revision: str | None = "0005_trigger_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runtime"


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("profile_key", sa.LargeBinary, primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    # Samples kept so far cannot be told apart by profile, and an enum violation showed the
    # value sent: they go, and the next violations fill the samples again.
    op.execute("UPDATE runtime.trigger_stats SET samples = '[]'::jsonb")


def downgrade() -> None:
    op.drop_table("erasures", schema=SCHEMA)
