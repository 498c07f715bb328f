"""Token ids (revocation without the secret) and admin-recoverable, encrypted ID numbers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
-- A token's public name: what an admin revokes (the token itself stays secret).
ALTER TABLE api_tokens ADD COLUMN token_id text;
-- The full ID number, Fernet-encrypted with a key from settings, for audited admin
-- recovery only; NULL when no key is configured (never the plain number).
ALTER TABLE workers ADD COLUMN id_number_encrypted text
"""

# Tokens issued before this revision get an id from their hash (which names them
# in audit trails already and reveals nothing of the token); then the id is required.
NAME_EXISTING_TOKENS = "UPDATE api_tokens SET token_id = 'tok_' || left(token_hash, 16)"
REQUIRE_TOKEN_IDS = """
ALTER TABLE api_tokens ALTER COLUMN token_id SET NOT NULL;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_token_id_key UNIQUE (token_id)
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)
    op.execute(NAME_EXISTING_TOKENS)
    for statement in sql_statements(REQUIRE_TOKEN_IDS):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE workers DROP COLUMN id_number_encrypted")
    op.execute("ALTER TABLE api_tokens DROP COLUMN token_id")
