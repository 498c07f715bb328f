"""The scan log partitioned by hash of worker_ref; a scan_id still applied at most once.

Why hash of ``worker_ref``, not time:

- Every read of the log is by worker: the tracker loads a batch's workers'
  whole histories (``worker_ref = ANY``), ``returnloop rebuild`` pages through
  workers, the bureau looks a worker's check-in up. Hashing by ``worker_ref``
  puts a worker's scans in one partition, so a lookup for one worker scans one
  partition's index; range partitions by ``occurred_at`` or ``received_at``
  would all be visited by every such read, since a history spans them.
- Time partitions would pay off by being dropped once old, but the log is the
  source of truth: ``returnloop rebuild`` folds a worker's whole history, so
  nothing may be dropped while its loops can still be rebuilt. A wave lasts
  about 40 days; there is no "old" inside one.
- ``worker_ref`` is what Kafka keys ``scans.accepted`` by, what the tracker locks
  by, and the column a sharded PostgreSQL would distribute every per-worker table
  by: the partitions are the same cut the rest of the system makes.

The primary key of a partitioned table must include its partition key, so the
log's key becomes ``(worker_ref, scan_id)``. That alone would weaken the
idempotency: a ``scan_id`` that arrives again under another ``worker_ref`` (a code
re-linked to another worker between a delivery and its redelivery, a replay
after a restore that resolves differently, a scanner reusing an id) would be
applied twice. So the ids get a narrow table of their own, ``applied_scan_ids``
(``scan_id`` its key, partitioned by hash of ``scan_id``): ``record_scans``
inserts the batch's ids there ``ON CONFLICT (scan_id) DO NOTHING`` and logs only
the scans whose id was new, in one statement. A scan is applied at most once,
whatever worker it names, exactly as before.

Sixteen partitions each: enough to keep each partition's indexes and vacuum
small at a province's volume (docs/OPERATIONS.md); the modulus is fixed, and a
different one is a migration like this one (copy, swap).

The upgrade copies the rows in one ``INSERT ... SELECT`` inside the migration's
transaction (the log is locked against writers meanwhile: stop the trackers
first), builds the keys and indexes after the copy, swaps the names and drops the
old table. The downgrade does the reverse.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from alembic import op

from shared.adapters.postgres.schema import sql_statements

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PARTITIONS = 16


def _partitions(table: str) -> str:
    return ";\n".join(
        f"CREATE TABLE {table}_p{remainder:02d} PARTITION OF {table} "
        f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {remainder})"
        for remainder in range(PARTITIONS)
    )


# One statement per execute: the asyncpg driver prepares each statement.
SCHEMA = f"""
-- Out of the way, names and all, so the new table takes the old names.
ALTER TABLE applied_scans RENAME TO applied_scans_unpartitioned;
ALTER INDEX applied_scans_pkey RENAME TO applied_scans_unpartitioned_pkey;
ALTER INDEX applied_scans_worker_idx RENAME TO applied_scans_unpartitioned_worker_idx;
ALTER INDEX applied_scans_checkin_idx RENAME TO applied_scans_unpartitioned_checkin_idx;

CREATE TABLE applied_scans (LIKE applied_scans_unpartitioned INCLUDING DEFAULTS)
    PARTITION BY HASH (worker_ref);
{_partitions("applied_scans")};
INSERT INTO applied_scans SELECT * FROM applied_scans_unpartitioned;
ALTER TABLE applied_scans ADD PRIMARY KEY (worker_ref, scan_id);
CREATE INDEX applied_scans_worker_idx ON applied_scans (worker_ref, occurred_at);
-- The daily tick-off finds an enterprise's check-ins in the applied-scan log.
CREATE INDEX applied_scans_checkin_idx ON applied_scans (enterprise_id, occurred_at)
    WHERE kind = 'checkin';

-- The idempotency key: each scan_id applied once, whatever worker it names.
CREATE TABLE applied_scan_ids (scan_id text NOT NULL) PARTITION BY HASH (scan_id);
{_partitions("applied_scan_ids")};
INSERT INTO applied_scan_ids SELECT scan_id FROM applied_scans_unpartitioned;
ALTER TABLE applied_scan_ids ADD PRIMARY KEY (scan_id);

DROP TABLE applied_scans_unpartitioned;
ANALYZE applied_scans;
ANALYZE applied_scan_ids
"""

DOWNGRADE = """
ALTER TABLE applied_scans RENAME TO applied_scans_partitioned;
ALTER INDEX applied_scans_pkey RENAME TO applied_scans_partitioned_pkey;
ALTER INDEX applied_scans_worker_idx RENAME TO applied_scans_partitioned_worker_idx;
ALTER INDEX applied_scans_checkin_idx RENAME TO applied_scans_partitioned_checkin_idx;

CREATE TABLE applied_scans (LIKE applied_scans_partitioned INCLUDING DEFAULTS);
INSERT INTO applied_scans SELECT * FROM applied_scans_partitioned;
ALTER TABLE applied_scans ADD PRIMARY KEY (scan_id);
CREATE INDEX applied_scans_worker_idx ON applied_scans (worker_ref, occurred_at);
CREATE INDEX applied_scans_checkin_idx ON applied_scans (enterprise_id, occurred_at)
    WHERE kind = 'checkin';

DROP TABLE applied_scans_partitioned;
DROP TABLE applied_scan_ids;
ANALYZE applied_scans
"""


def upgrade() -> None:
    for statement in sql_statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    for statement in sql_statements(DOWNGRADE):
        op.execute(statement)
