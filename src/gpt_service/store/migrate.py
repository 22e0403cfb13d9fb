"""Schema migrations (Alembic), applied at start-up by whoever opens the store first.

Safe when several replicas start at the same instant: on PostgreSQL the upgrade runs in one
transaction holding an advisory lock, so the others wait, then find the schema at head; on
SQLite the transaction starts with ``BEGIN IMMEDIATE`` (the database's write lock) to the
same effect. DDL is transactional on both, so a failed upgrade leaves nothing half done.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ADVISORY_LOCK_KEY = 0x67707473  # "gpts": one key for this service's schema


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to head; returns (revision before, revision after)."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), "head")
        after = current_revision(connection)
    if before != after:
        logger.info("job store schema migrated from %s to %s", before or "nothing", after)
    return before, after
