"""Webhooks: receivers registered by an admin, and the log of every delivery to them.

A delivery row is written (once per registration and message) before the webhooks
process commits the offsets of the message that made it, so a restart loses none;
it is then tried until delivered or dead.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- secret signs each delivery, so it is kept as given; the API shows it once, at creation.
-- enterprise_id and district filter (NULL: any); the district is the enterprise's.
CREATE TABLE webhook_registrations (
    webhook_id    text PRIMARY KEY,
    url           text NOT NULL,
    event_kinds   text[] NOT NULL CHECK (cardinality(event_kinds) > 0),
    enterprise_id text,
    district      text,
    secret        text NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- delivery_id is derived from (webhook_id, message_id): the same message to the same
-- receiver is one row, and receivers drop repeats by it (X-Returnloop-Delivery).
-- id orders the log (newest first) and keys its pages.
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    delivery_id      uuid NOT NULL UNIQUE,
    webhook_id       text NOT NULL REFERENCES webhook_registrations (webhook_id)
                         ON DELETE CASCADE,
    message_id       text NOT NULL,
    event_kind       text NOT NULL,
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    last_status_code integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    finished_at      timestamptz,
    UNIQUE (webhook_id, message_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id DESC)
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("DROP TABLE webhook_registrations")
