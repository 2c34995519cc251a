"""stopped journeys: their deliveries not gone out are skipped, and so are their requests
still on their way when the stop is heard

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "activator"


def upgrade() -> None:
    op.create_table(
        "stopped_journeys",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("journey_id", sa.String(64), primary_key=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "journey_id", name=op.f("pk_stopped_journeys")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("stopped_journeys", schema=SCHEMA)
