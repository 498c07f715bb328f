"""Scans recorded over a denial keep why; self-arranged journeys; districts and open posts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- Recorded although the decision before it said no: the reason given at the checkpoint.
ALTER TABLE applied_scans ADD COLUMN override_reason text;
-- How the worker travels: on an organised trip, or on their own (no boarding).
ALTER TABLE workers ADD COLUMN travel text NOT NULL DEFAULT 'organised'
    CHECK (travel IN ('organised', 'self'));
-- A self-arranged journey's expected arrival: the overdue_arrival deadline starts there.
ALTER TABLE workers ADD COLUMN expected_arrival timestamptz;
-- The county or district an enterprise belongs to, and its jobs still to fill.
ALTER TABLE enterprises ADD COLUMN district text;
ALTER TABLE enterprises ADD COLUMN open_positions integer CHECK (open_positions >= 0);
CREATE INDEX enterprises_district ON enterprises (district)
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    for statement in sql_statements(
        """
        DROP INDEX enterprises_district;
        ALTER TABLE enterprises DROP COLUMN open_positions;
        ALTER TABLE enterprises DROP COLUMN district;
        ALTER TABLE workers DROP COLUMN expected_arrival;
        ALTER TABLE workers DROP COLUMN travel;
        ALTER TABLE applied_scans DROP COLUMN override_reason
        """
    ):
        op.execute(statement)
