"""profiles: a GIN index on attributes, so a search by attribute (``attributes @> ...``)
reads the index instead of every profile of the workspace

Revision ID: 0008_profile_attribute_search
Revises: 0007_experiments
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_profile_attribute_search"
down_revision: str | None = "0007_experiments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runtime"


def upgrade() -> None:
    # jsonb_path_ops: smaller and faster than the default class, and containment is all
    # the search asks of it.
    op.create_index(
        "ix_profiles_attributes", "profiles", ["attributes"], schema=SCHEMA,
        postgresql_using="gin", postgresql_ops={"attributes": "jsonb_path_ops"},
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_profiles_attributes", "profiles", schema=SCHEMA)
