"""PostgreSQL as the tests read it from outside: a whole-database dump."""

from __future__ import annotations

import re
import shutil
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


def client_binary(name: str, server_major: int) -> Path:
    """A PostgreSQL client program (``pg_dump``, ``pg_restore``) fit for a server of major
    version ``server_major``: the server's own (Debian: /usr/lib/postgresql/N/bin), else
    the first of PATH, the other installed versions and pgserver's that is at least as new.
    Fails, saying what it looked at, when there is none: a backup test never skips."""
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin") / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    candidates += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    candidates.append(Path(pgserver.postgres_server.POSTGRES_BIN_PATH) / name)
    seen = []
    for candidate in candidates:
        if not candidate.is_file():
            continue
        version = subprocess.run(
            [str(candidate), "--version"], capture_output=True, text=True, check=False
        ).stdout
        found = re.search(r"(\d+)(?:\.\d+)?", version)
        seen.append(f"{candidate} ({version.strip() or 'no version'})")
        if found and int(found.group(1)) >= server_major:
            return candidate
    raise RuntimeError(
        f"no {name} for PostgreSQL {server_major} or newer: install the server's client "
        f"programs (Debian: apt-get install postgresql-client-{server_major}); "
        f"looked at {', '.join(seen) or 'nothing installed'}"
    )
