"""Database URLs and schema migrations (alembic, run programmatically)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def asyncpg_url(database_url: str) -> str:
    """The URL in the plain ``postgresql://`` form asyncpg takes."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql://" + database_url.removeprefix(prefix)
    return database_url


def sqlalchemy_url(database_url: str) -> str:
    """The URL in SQLAlchemy's asyncpg-dialect form."""
    return "postgresql+asyncpg://" + asyncpg_url(database_url).removeprefix("postgresql://")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("database_url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(database_url), revision)


def sql_statements(script: str) -> list[str]:
    """Split a migration's SQL into statements: the asyncpg driver prepares one at a time.

    ``--`` comments are dropped first, so a ``;`` inside one cannot split a statement.
    Migrations hold DDL only: no string literal contains ``--`` or ``;``.
    """
    without_comments = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return [statement.strip() for statement in without_comments.split(";") if statement.strip()]
