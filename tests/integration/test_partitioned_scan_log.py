"""Migration 0012 (the scan log partitioned by hash of worker_ref) on a populated database:
every row kept, a scan still applied at most once, rebuild gives the same states, new
scans apply; and the downgrade keeps every row too. A database of its own, dropped after."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest
from alembic import command

from shared.adapters.postgres.schema import alembic_config, migrate
from shared.domain.model import Rules
from shared.service_layer.rebuild import rebuild
from tests.support.scan_log import (
    apply_all,
    scan_log,
    scratch_database,
    states,
    store_on,
    synthetic_scans,
)
from tests.support.scans import T0
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

WORKERS = 3000


async def _count(pool: asyncpg.Pool, table: str) -> int:
    count: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def test_partitioning_a_populated_scan_log_keeps_every_row_and_the_idempotency(
    servers: Servers,
) -> None:
    async with scratch_database(servers.database_url, "partition") as url:
        await asyncio.to_thread(migrate, url, "0011")
        scans = synthetic_scans(WORKERS, seed=12, start=T0)
        async with store_on(url, at_0011=True) as store:
            assert await apply_all(store, scans) == {item.scan.scan_id for item in scans}
            log_before = await scan_log(store.pool)
            states_before = await states(store.pool)
        assert len(log_before) == len(scans) > 2 * WORKERS
        assert len(states_before) == WORKERS

        await asyncio.to_thread(migrate, url, "0012")

        async with store_on(url) as store:
            pool = store.pool
            assert (
                await pool.fetchval(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = 'applied_scans'::regclass"
                )
                == 16
            )
            assert (
                await pool.fetchval(
                    "SELECT relkind::text FROM pg_class WHERE oid = 'applied_scans'::regclass"
                )
                == "p"
            )
            assert await scan_log(pool) == log_before
            assert await _count(pool, "applied_scan_ids") == len(scans)
            # Every partition got some of the workers.
            assert await pool.fetchval("SELECT count(DISTINCT tableoid) FROM applied_scans") == 16

            # The same scans again, and one under another worker's ref: nothing new.
            assert await apply_all(store, scans) == set()
            other = dataclasses.replace(scans[0], worker_ref=scans[-1].worker_ref)
            assert await apply_all(store, [other]) == set()
            assert await _count(pool, "applied_scans") == len(scans)

            # Rebuild from the partitioned log: the states as before.
            await pool.execute(
                "DELETE FROM loop_state WHERE worker_ref IN "
                "(SELECT worker_ref FROM loop_state ORDER BY worker_ref LIMIT 500)"
            )
            await pool.execute(
                "UPDATE loop_state SET status = 'broken', scan_count = 99 WHERE worker_ref IN "
                "(SELECT worker_ref FROM loop_state ORDER BY worker_ref DESC LIMIT 500)"
            )
            report = await rebuild(store, rules=Rules(), chunk_size=400, jobs=2, progress=False)
            assert report.workers == WORKERS
            assert report.scans == len(scans)
            assert await states(pool) == states_before

            # A new batch, duplicates inside it, applies once.
            more = synthetic_scans(200, seed=13, start=T0)
            new_ids = await apply_all(store, [*more, *more[:50]], size=300)
            assert new_ids == {item.scan.scan_id for item in more}
            assert await _count(pool, "applied_scans") == len(scans) + len(more)
            assert await _count(pool, "loop_state") == WORKERS + 200
            log_after = await scan_log(pool)

        # Down again: every row kept, the plain key back.
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0011")
        async with store_on(url) as store:
            assert await scan_log(store.pool) == log_after
            assert (
                await store.pool.fetchval(
                    "SELECT relkind::text FROM pg_class WHERE oid = 'applied_scans'::regclass"
                )
                == "r"
            )
            assert await store.pool.fetchval("SELECT to_regclass('applied_scan_ids')") is None
