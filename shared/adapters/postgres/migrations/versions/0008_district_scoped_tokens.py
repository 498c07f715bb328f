"""Supervisor tokens scoped to one district; the daily tick-off's check-in scans by enterprise.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- A supervisor token may read one district's enterprises only (NULL: every district).
ALTER TABLE api_tokens ADD COLUMN district text;
-- The daily tick-off finds an enterprise's check-ins in the applied-scan log.
CREATE INDEX applied_scans_checkin_idx ON applied_scans (enterprise_id, occurred_at)
    WHERE kind = 'checkin'
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    for statement in sql_statements(
        """
        DROP INDEX applied_scans_checkin_idx;
        ALTER TABLE api_tokens DROP COLUMN district
        """
    ):
        op.execute(statement)
