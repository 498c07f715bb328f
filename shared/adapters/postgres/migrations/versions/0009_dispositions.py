"""Dispositions: what happened after a failed check, as events of the worker.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- Folded with the scans in event time (at); idempotent on disposition_id.
CREATE TABLE dispositions (
    disposition_id text PRIMARY KEY,
    worker_ref     text NOT NULL REFERENCES workers (worker_ref),
    kind           text NOT NULL CHECK (kind IN ('isolation', 'medical_observation',
                       'released', 'code_appeal_upheld', 'withdrawn')),
    at             timestamptz NOT NULL,
    recorded_by    text NOT NULL,
    note           text NOT NULL DEFAULT '',
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispositions_worker_idx ON dispositions (worker_ref, at)
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE dispositions")
