"""The SQLAlchemy engine of the job store, for SQLite or PostgreSQL, and ``StoreBase``: the
plumbing every query of the store uses (transactions that turn a lost database into a 503,
``NOTIFY`` and the lease clock on PostgreSQL).

PostgreSQL connections give up after ``connect_timeout`` seconds (a URL's own
``?connect_timeout=`` wins): without it a silent host blocks a request, or start-up, for good.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from gpt_service.errors import Unavailable

CONNECT_TIMEOUT_SECONDS = 10
NOTIFY_CHANNEL = "gpt_jobs"
RETRY_AFTER_SECONDS = 5


def make_engine(url: str, connect_timeout: float = CONNECT_TIMEOUT_SECONDS) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        args = {} if "connect_timeout" in parsed.query else {"connect_timeout": connect_timeout}
        return create_engine(
            url, pool_pre_ping=True, pool_size=4, max_overflow=8, connect_args=args
        )
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    # pysqlite's own transaction handling defers BEGIN; take the write lock up front instead,
    # so a read-then-write (claim, merge of progress) cannot interleave with another process.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def error_line(exc: Exception) -> str:
    """The driver's message of a connection error, on one line."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return "; ".join(lines) or type(orig).__name__


def unreachable(url: str, connect_timeout: float = CONNECT_TIMEOUT_SECONDS) -> str | None:
    """Why a PostgreSQL store cannot be reached (one line, password hidden), or None."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return None
    engine = make_engine(url, connect_timeout)
    try:
        with engine.connect() as db:
            db.execute(select(1))
    except (OperationalError, InterfaceError) as exc:
        shown = parsed.difference_update_query(["connect_timeout"])
        shown = shown.render_as_string(hide_password=True)
        return f"the job store {shown} is unreachable: {error_line(exc)}"
    finally:
        engine.dispose()
    return None


class StoreUnavailable(Unavailable):
    """The database cannot be reached (503 with Retry-After); jobs keep their state in it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=RETRY_AFTER_SECONDS)


class StoreBase:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as db:
                db.execute(select(1))
            return True
        except Exception:
            return False

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except (OperationalError, InterfaceError) as exc:  # the database is down or away
            raise StoreUnavailable(
                f"the job store ({self.dialect}) is unreachable: {error_line(exc)}"
            ) from exc

    def _notify(self, connection: Connection, job_ids: Iterable[str]) -> None:
        if self.is_postgres:
            for job_id in job_ids:
                connection.execute(
                    text("SELECT pg_notify(:channel, :id)"),
                    {"channel": NOTIFY_CHANNEL, "id": job_id},
                )

    def _clock(self, db: Connection) -> float:
        """Lease time: the database's clock on PostgreSQL, so the replicas' clocks may drift."""
        if self.is_postgres:
            return float(db.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar())
        return time.time()
