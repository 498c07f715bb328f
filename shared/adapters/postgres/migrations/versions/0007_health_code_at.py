"""When a worker's current colour was observed, so a decision can tell a stale colour.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE loop_state ADD COLUMN health_code_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE loop_state DROP COLUMN health_code_at")
