"""`returnloop rotate-id-key`: every kept ID number re-encrypted with the current key.

On a PostgreSQL of its own: rotation rewrites every row, and the shared test
database's rows must stay readable with the key the running API has.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet

from services.cli.embedded import EmbeddedPostgres
from shared.adapters.postgres.manifests import ManifestStore
from shared.adapters.postgres.pool import create_pool
from shared.adapters.postgres.schema import migrate
from shared.id_encryption import IdNumberCipher, IdNumberUnreadable
from shared.identity import mask_id_number
from tests.support.servers import random_id_number

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with EmbeddedPostgres(tmp_path) as postgres:
        migrate(postgres.database_url)
        yield postgres.database_url


def rotate_id_key(database_url: str, keys: list[bytes]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RETURNLOOP_DATABASE_URL": database_url,
        "RETURNLOOP_ID_ENCRYPTION_KEYS": ",".join(key.decode() for key in keys),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "rotate-id-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def keep_workers(database_url: str, cipher: IdNumberCipher, count: int) -> dict[str, str]:
    id_numbers = {f"w_{index:024x}": random_id_number() for index in range(count)}
    pool = await create_pool(database_url, max_size=2)
    try:
        await ManifestStore(pool).upsert_manifest(
            [],
            [],
            [
                {
                    "worker_ref": ref,
                    "id_masked": mask_id_number(id_number),
                    "name": "周九",
                    "enterprise_id": None,
                    "trip_id": None,
                    "id_number_encrypted": cipher.encrypt(id_number),
                }
                for ref, id_number in id_numbers.items()
            ],
        )
    finally:
        await pool.close()
    return id_numbers


async def kept(database_url: str) -> dict[str, str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT worker_ref, id_number_encrypted FROM workers")
    finally:
        await connection.close()
    return {row["worker_ref"]: row["id_number_encrypted"] for row in rows}


async def test_rotation_re_encrypts_every_kept_id_number_with_the_new_key(
    database_url: str,
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    id_numbers = await keep_workers(database_url, IdNumberCipher([old]), 2500)

    result = rotate_id_key(database_url, [new, old])

    assert result.returncode == 0, result.stderr
    assert "re-encrypted 2500 ID number(s)" in result.stdout
    only_new = IdNumberCipher([new])
    after = await kept(database_url)
    assert {ref: only_new.decrypt(ciphertext) for ref, ciphertext in after.items()} == id_numbers
    with pytest.raises(IdNumberUnreadable):
        IdNumberCipher([old]).decrypt(next(iter(after.values())))


async def test_rotation_without_the_old_key_fails_and_changes_nothing(database_url: str) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    await keep_workers(database_url, IdNumberCipher([old]), 3)
    before = await kept(database_url)

    result = rotate_id_key(database_url, [new])

    assert result.returncode == 1
    assert "list the old key after the new one" in result.stderr
    assert await kept(database_url) == before


def test_rotation_with_no_key_configured_is_refused(database_url: str) -> None:
    result = rotate_id_key(database_url, [])

    assert result.returncode == 2
    assert "RETURNLOOP_ID_ENCRYPTION_KEYS" in result.stderr
