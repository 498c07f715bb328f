"""Health-code and social-security-card links, their history, and the access audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- A code bound to a worker. Card numbers are stored only as a keyed hash and a
-- masked form. Health-code ids are shown to users and stored as they are.
CREATE TABLE code_links (
    link_id     bigserial PRIMARY KEY,
    code_type   text NOT NULL CHECK (code_type IN ('health_code', 'ssc_card')),
    code_hash   text NOT NULL,
    code_shown  text NOT NULL,
    worker_ref  text NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    linked_by   text NOT NULL,
    unlinked_at timestamptz,
    unlinked_by text,
    unlink_reason text
);
CREATE UNIQUE INDEX code_links_active_code ON code_links (code_type, code_hash)
    WHERE unlinked_at IS NULL;
CREATE UNIQUE INDEX code_links_active_worker ON code_links (worker_ref, code_type)
    WHERE unlinked_at IS NULL;

-- Who looked whom up: personal health data, every access traceable.
CREATE TABLE access_audit (
    audit_id   bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    role       text NOT NULL,
    action     text NOT NULL,
    worker_ref text,
    detail     text
);
CREATE INDEX access_audit_worker_idx ON access_audit (worker_ref, at);
CREATE INDEX access_audit_at_idx ON access_audit (at)
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE access_audit, code_links")
