"""When a worker's current colour was observed, so a decision can tell a stale colour.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- When the colour in health_code was observed (scanned or from the platform).
ALTER TABLE loop_state ADD COLUMN health_code_at timestamptz
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE loop_state DROP COLUMN health_code_at")
