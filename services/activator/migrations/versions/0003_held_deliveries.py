"""deliveries held by quiet hours until a scheduler timer releases them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "activator"
# 0002 named its check through the naming convention a second time; the model's name is
# the one below. op.f() marks both as final names.
OLD_CHECK = "ck_deliveries_ck_deliveries_status"
CHECK = "ck_deliveries_status"


def upgrade() -> None:
    op.drop_constraint(op.f(OLD_CHECK), "deliveries", schema=SCHEMA)
    op.create_check_constraint(
        op.f(CHECK), "deliveries",
        "status IN ('pending', 'held', 'sent', 'skipped', 'failed')", schema=SCHEMA,
    )  # fmt: skip


def downgrade() -> None:
    # Held deliveries go back to waiting in the claim loop until their due time.
    op.execute(f"UPDATE {SCHEMA}.deliveries SET status = 'pending' WHERE status = 'held'")
    op.drop_constraint(op.f(CHECK), "deliveries", schema=SCHEMA)
    op.create_check_constraint(
        op.f(OLD_CHECK), "deliveries",
        "status IN ('pending', 'sent', 'skipped', 'failed')", schema=SCHEMA,
    )  # fmt: skip
