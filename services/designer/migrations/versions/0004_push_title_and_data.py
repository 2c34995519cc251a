"""push templates: a title and key-value data

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "designer"


def upgrade() -> None:
    op.add_column("templates", sa.Column("title", sa.Text), schema=SCHEMA)
    op.add_column("templates", sa.Column("data", JSONB), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("templates", "data", schema=SCHEMA)
    op.drop_column("templates", "title", schema=SCHEMA)
