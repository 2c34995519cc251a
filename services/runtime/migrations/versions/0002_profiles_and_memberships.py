"""profiles, memberships, processed events, timeline, explanations, counters, outbox

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

SCHEMA = "runtime"
TS = sa.DateTime(timezone=True)


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, TS, nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(200), primary_key=True),
        sa.Column("attributes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("consent", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        _now("created_at"),
        _now("updated_at"),
        schema=SCHEMA,
    )
    op.create_table(
        "memberships",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(200), primary_key=True),
        sa.Column("journey_id", sa.String(64), primary_key=True),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("stage", sa.String(200)),
        sa.Column("step_id", sa.String(100)),
        sa.Column("flow", sa.String(16)),
        sa.Column("outcome", sa.String(16)),
        sa.Column("entered_at", TS),
        sa.Column("left_at", TS),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_memberships_journey", "memberships", ["journey_id", "active", "stage"], schema=SCHEMA
    )
    op.create_table(
        "processed",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        _now("processed_at"),
        schema=SCHEMA,
    )
    op.create_table(
        "timeline",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.String(200), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(200)),
        sa.Column("step_id", sa.String(100)),
        sa.Column("detail", JSONB, nullable=False),
        sa.Column("cause", JSONB, nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_timeline_profile", "timeline", ["workspace_id", "profile_id", "id"], schema=SCHEMA
    )
    op.create_table(
        "explanations",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reasons", JSONB, nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_explanations_profile", "explanations", ["workspace_id", "profile_id", "id"],
        schema=SCHEMA,
    )  # fmt: skip
    op.create_table(
        "counters",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("journey_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "members",
        sa.Column("member_id", sa.String(64), primary_key=True),
        sa.Column("heartbeat_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("msg_id", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        _now("created_at"),
        sa.Column("published_at", TS),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["id"], schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NULL"),
    )  # fmt: skip


def downgrade() -> None:
    tables = ("outbox", "members", "counters", "explanations", "timeline", "processed",
              "memberships", "profiles")  # fmt: skip
    for table in tables:
        op.drop_table(table, schema=SCHEMA)
