"""Outbox: transitions and alerts are written in the apply transaction, then relayed.

A crash between the state's commit and the publish can no longer lose them: the
rows stay until a relay has the broker's acknowledgement and deletes them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- Relayed in id order (one relay at a time, under an advisory lock), so a worker's
-- messages keep their order; message_id is the stable id consumers drop duplicates by.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    message_id  uuid NOT NULL,
    topic       text NOT NULL,
    key         bytea,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
)
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE outbox")
