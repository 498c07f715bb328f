"""PostgreSQL as the tests read it from outside: a whole-database dump."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pgserver.postgres_server

from shared.adapters.postgres.schema import asyncpg_url


def pg_dump(database_url: str, target: Path) -> bytes:
    """The database as ``pg_dump`` writes it (pgserver's binary, any server), into ``target``."""
    binary = Path(pgserver.postgres_server.POSTGRES_BIN_PATH) / "pg_dump"
    subprocess.run(
        [str(binary), "--no-owner", "--file", str(target), asyncpg_url(database_url)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target.read_bytes()
