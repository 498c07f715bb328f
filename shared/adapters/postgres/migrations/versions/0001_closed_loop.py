"""The closed loop: manifests, applied-scan log, per-worker state, alerts, tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = """
        CREATE TABLE enterprises (
            enterprise_id text PRIMARY KEY,
            name          text NOT NULL,
            shortage      integer NOT NULL DEFAULT 0 CHECK (shortage >= 0),
            updated_at    timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE trips (
            trip_id     text PRIMARY KEY,
            mode        text NOT NULL CHECK (mode IN ('bus', 'train', 'flight')),
            origin      text NOT NULL,
            destination text NOT NULL,
            departs_at  timestamptz NOT NULL,
            eta         timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now()
        );

        -- No plaintext ID number: worker_ref is a keyed hash, id_masked is 6+4.
        CREATE TABLE workers (
            worker_ref    text PRIMARY KEY,
            id_masked     text NOT NULL,
            name          text,
            enterprise_id text,
            trip_id       text,
            updated_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX workers_enterprise_idx ON workers (enterprise_id);
        CREATE INDEX workers_trip_idx ON workers (trip_id);

        -- The event log: each scan applied once (scan_id is the idempotency key).
        CREATE TABLE applied_scans (
            scan_id          text PRIMARY KEY,
            worker_ref       text NOT NULL,
            kind             text NOT NULL,
            occurred_at      timestamptz NOT NULL,
            station          text NOT NULL,
            temperature_c    double precision,
            health_code      text,
            trip_id          text,
            enterprise_id    text,
            received_at      timestamptz NOT NULL,
            applied_at       timestamptz NOT NULL DEFAULT now(),
            source_topic     text,
            source_partition integer,
            source_offset    bigint
        );
        CREATE INDEX applied_scans_worker_idx ON applied_scans (worker_ref, occurred_at);

        CREATE TABLE health_code_updates (
            worker_ref  text NOT NULL,
            as_of       timestamptz NOT NULL,
            health_code text NOT NULL CHECK (health_code IN ('green', 'yellow', 'red')),
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (worker_ref, as_of, health_code)
        );

        CREATE TABLE loop_state (
            worker_ref               text PRIMARY KEY,
            id_masked                text NOT NULL,
            stage                    text NOT NULL,
            status                   text NOT NULL,
            health_code              text,
            departed                 boolean NOT NULL DEFAULT false,
            boarded_trip_id          text,
            arrived                  boolean NOT NULL DEFAULT false,
            checked_in_enterprise_id text,
            checkpoints              jsonb NOT NULL DEFAULT '{}'::jsonb,
            next_deadline            timestamptz,
            scan_count               integer NOT NULL DEFAULT 0,
            updated_at               timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX loop_state_deadline_idx ON loop_state (next_deadline)
            WHERE next_deadline IS NOT NULL;
        CREATE INDEX loop_state_trip_idx ON loop_state (boarded_trip_id);

        CREATE TABLE alerts (
            worker_ref text NOT NULL,
            kind       text NOT NULL,
            raised_at  timestamptz NOT NULL,
            open       boolean NOT NULL,
            closed_at  timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (worker_ref, kind, raised_at)
        );
        CREATE INDEX alerts_open_idx ON alerts (kind, raised_at) WHERE open;

        -- Role tokens: only a hash of the token is stored.
        CREATE TABLE api_tokens (
            token_hash    text PRIMARY KEY,
            role          text NOT NULL,
            enterprise_id text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            expires_at    timestamptz,
            revoked_at    timestamptz
        );
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute(
        "DROP TABLE api_tokens, alerts, loop_state, health_code_updates, applied_scans, "
        "workers, trips, enterprises"
    )
