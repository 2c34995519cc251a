"""event triggers; workspaces that existed before them do not require them at publish

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "designer"


def upgrade() -> None:
    op.create_table(
        "event_triggers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey(f"{SCHEMA}.workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("properties", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("required", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("status", sa.String(16), nullable=False, server_default="draft"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("workspace_id", "name"),
        schema=SCHEMA,
    )
    # A workspace without a settings row reads the defaults, where the check is on: give
    # every existing workspace a row that keeps its journeys publishing as before.
    op.execute(
        """
        INSERT INTO designer.workspace_settings (workspace_id, settings)
        SELECT id, '{}'::jsonb FROM designer.workspaces
        ON CONFLICT (workspace_id) DO NOTHING
        """
    )
    op.execute(
        """
        UPDATE designer.workspace_settings
        SET settings = settings || '{"require_event_triggers": false}'::jsonb,
            updated_at = now()
        """
    )


def downgrade() -> None:
    op.execute(
        "UPDATE designer.workspace_settings SET settings = settings - 'require_event_triggers'"
    )
    op.drop_table("event_triggers", schema=SCHEMA)
