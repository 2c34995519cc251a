"""folders, journeys and versions, templates, connectors, settings, outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "designer"


def _created() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def _updated() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def _workspace() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "workspace_id",
        sa.String(32),
        sa.ForeignKey(f"{SCHEMA}.workspaces.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("folder_ids", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        schema=SCHEMA,
    )
    op.create_table(
        "folders",
        sa.Column("id", sa.String(32), primary_key=True),
        _workspace(),
        sa.Column("parent_id", sa.String(32), sa.ForeignKey(f"{SCHEMA}.folders.id")),
        sa.Column("name", sa.String(200), nullable=False),
        _created(),
        sa.UniqueConstraint(
            "workspace_id", "parent_id", "name", postgresql_nulls_not_distinct=True
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "journeys",
        sa.Column("id", sa.String(32), primary_key=True),
        _workspace(),
        sa.Column("folder_id", sa.String(32), sa.ForeignKey(f"{SCHEMA}.folders.id")),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("live_version", sa.Integer),
        _created(),
        _updated(),
        schema=SCHEMA,
    )
    op.create_index(
        "uq_journeys_name_in_folder",
        "journeys",
        ["workspace_id", sa.text("coalesce(folder_id, '')"), "name"],
        unique=True,
        schema=SCHEMA,
    )
    op.create_table(
        "journey_versions",
        sa.Column(
            "journey_id",
            sa.String(32),
            sa.ForeignKey(f"{SCHEMA}.journeys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("published", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("body", JSONB, nullable=False),
        _created(),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.String(32), primary_key=True),
        _workspace(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("html", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        _created(),
        _updated(),
        sa.UniqueConstraint("workspace_id", "name"),
        schema=SCHEMA,
    )
    op.create_table(
        "connectors",
        sa.Column("id", sa.String(32), primary_key=True),
        _workspace(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("config", JSONB, nullable=False),
        sa.Column("secrets", sa.Text),
        _created(),
        _updated(),
        sa.UniqueConstraint("workspace_id", "name"),
        schema=SCHEMA,
    )
    op.create_table(
        "workspace_settings",
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey(f"{SCHEMA}.workspaces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("settings", JSONB, nullable=False),
        _updated(),
        schema=SCHEMA,
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("msg_id", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        _created(),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    for table in ("outbox", "workspace_settings", "connectors", "templates",
                  "journey_versions", "journeys", "folders"):  # fmt: skip
        op.drop_table(table, schema=SCHEMA)
    op.drop_column("api_keys", "folder_ids", schema=SCHEMA)
