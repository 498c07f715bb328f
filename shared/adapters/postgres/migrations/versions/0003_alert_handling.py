"""Alert handling: a stable alert id, acknowledgement, and indexes for supervisors' reads.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
# The tracker upserts alerts on (worker_ref, kind, raised_at) and sets only open,
# closed_at and updated_at, so these columns survive its writes; the key stays.
SCHEMA = """
ALTER TABLE alerts
    ADD COLUMN alert_id        bigserial,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text,
    ADD COLUMN resolution_note text;
-- Also the index behind ``status=all`` pages, which walk alert_id downwards.
ALTER TABLE alerts ADD CONSTRAINT alerts_alert_id_key UNIQUE (alert_id);
-- Pages of open alerts (the default listing), newest first.
CREATE INDEX alerts_open_alert_id_idx ON alerts (alert_id) WHERE open;
-- A roster's checked_in count: who checked in at this enterprise.
CREATE INDEX loop_state_checked_in_enterprise_idx ON loop_state (checked_in_enterprise_id)
    WHERE checked_in_enterprise_id IS NOT NULL
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX loop_state_checked_in_enterprise_idx")
    op.execute(
        "ALTER TABLE alerts DROP COLUMN alert_id, DROP COLUMN acknowledged_at, "
        "DROP COLUMN acknowledged_by, DROP COLUMN resolution_note"
    )
