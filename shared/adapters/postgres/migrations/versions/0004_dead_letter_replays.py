"""Dead-letter replays: which dead letters ``returnloop dlq replay`` has sent back, and where.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
# A dead letter is named by its place on scans.rejected (partition, offset). The
# row holds no payload: the original bytes (with plain ID numbers) stay on Kafka.
SCHEMA = """
CREATE TABLE dead_letter_replays (
    dead_letter_partition integer NOT NULL,
    dead_letter_offset    bigint NOT NULL,
    reason                text NOT NULL,
    source_topic          text NOT NULL,
    target_topic          text NOT NULL,
    target_partition      integer,
    target_offset         bigint,
    replayed_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dead_letter_partition, dead_letter_offset)
)
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE dead_letter_replays")
