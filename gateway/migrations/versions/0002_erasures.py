"""erasures: the inbox finds a profile's events, and remembers erased profiles so their
messages' tracking hits record nothing

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

SCHEMA = "gateway"


def upgrade() -> None:
    op.create_index(
        "ix_event_inbox_profile", "event_inbox", ["workspace_id", "profile_id"], schema=SCHEMA
    )
    op.create_table(
        "erasures",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("profile_key", sa.LargeBinary, primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("erasures", schema=SCHEMA)
    op.drop_index("ix_event_inbox_profile", "event_inbox", schema=SCHEMA)
