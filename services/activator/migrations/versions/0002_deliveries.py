"""deliveries and the feedback outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "activator"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("activation_id", sa.String(200), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.String(200), nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("step_id", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("connector_id", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(1000)),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'skipped', 'failed')", name="ck_deliveries_status"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_deliveries_listing", "deliveries", ["workspace_id", "created_at", "activation_id"],
        schema=SCHEMA,
    )  # fmt: skip
    op.create_index(
        "ix_deliveries_journey", "deliveries", ["workspace_id", "journey_id", "status"],
        schema=SCHEMA,
    )  # fmt: skip
    op.create_index(
        "ix_deliveries_caps", "deliveries", ["workspace_id", "profile_id", "channel", "status"],
        schema=SCHEMA,
    )  # fmt: skip
    op.create_index(
        "ix_deliveries_due", "deliveries", ["next_attempt_at"], schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )  # fmt: skip
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("msg_id", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", TS),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["id"], schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NULL"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("deliveries", schema=SCHEMA)
