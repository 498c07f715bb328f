"""Migration SQL splits into whole statements, whatever its comments say."""

from __future__ import annotations

import importlib
from pathlib import Path

from shared.adapters.postgres.schema import sql_statements

VERSIONS = Path(__file__).resolve().parents[2] / "shared/adapters/postgres/migrations/versions"


def test_a_semicolon_in_a_comment_does_not_split_a_statement() -> None:
    script = """
    -- one thing; and another
    CREATE TABLE a (x int); -- trailing; comment
    CREATE INDEX a_x ON a (x)
    """
    assert sql_statements(script) == ["CREATE TABLE a (x int)", "CREATE INDEX a_x ON a (x)"]


def test_every_migration_splits_into_statements_that_each_start_with_a_keyword() -> None:
    for path in sorted(VERSIONS.glob("0*.py")):
        module = importlib.import_module(
            f"shared.adapters.postgres.migrations.versions.{path.stem}"
        )
        statements = sql_statements(module.SCHEMA)
        assert statements, path.name
        for statement in statements:
            # 0012 moves the scan log's rows into its partitioned table and drops the old.
            assert statement.split()[0].upper() in {
                "CREATE",
                "ALTER",
                "INSERT",
                "DROP",
                "ANALYZE",
            }, (
                path.name,
                statement[:60],
            )
