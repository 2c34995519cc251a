"""one explanation row per event, holding every journey's outcome and reasons

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

SCHEMA = "runtime"


def upgrade() -> None:
    op.add_column(
        "explanations",
        sa.Column("journeys", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        schema=SCHEMA,
    )
    op.execute(
        """
        UPDATE runtime.explanations AS x SET journeys = g.journeys
        FROM (
            SELECT min(id) AS id,
                   jsonb_agg(jsonb_build_object('journey_id', journey_id, 'outcome', outcome,
                                                'reasons', reasons) ORDER BY id) AS journeys
            FROM runtime.explanations
            GROUP BY workspace_id, profile_id, event_id
        ) AS g
        WHERE x.id = g.id
        """
    )
    op.execute("DELETE FROM runtime.explanations WHERE journeys = '[]'::jsonb")
    op.alter_column("explanations", "journeys", server_default=None, schema=SCHEMA)
    for column in ("journey_id", "outcome", "reasons"):
        op.drop_column("explanations", column, schema=SCHEMA)


def downgrade() -> None:
    op.add_column("explanations", sa.Column("journey_id", sa.String(64)), schema=SCHEMA)
    op.add_column("explanations", sa.Column("outcome", sa.String(32)), schema=SCHEMA)
    op.add_column("explanations", sa.Column("reasons", JSONB), schema=SCHEMA)
    op.execute(
        """
        INSERT INTO runtime.explanations
            (workspace_id, profile_id, event_id, name, at, journeys, journey_id, outcome, reasons)
        SELECT x.workspace_id, x.profile_id, x.event_id, x.name, x.at, '[]'::jsonb,
               j->>'journey_id', j->>'outcome', j->'reasons'
        FROM runtime.explanations AS x, jsonb_array_elements(x.journeys) AS j
        ORDER BY x.id
        """
    )
    op.execute("DELETE FROM runtime.explanations WHERE journey_id IS NULL")
    for column in ("journey_id", "outcome", "reasons"):
        op.alter_column("explanations", column, nullable=False, schema=SCHEMA)
    op.drop_column("explanations", "journeys", schema=SCHEMA)
