"""The ``jobs`` table (SQLAlchemy Core), as the Alembic migrations leave it.

JSON columns are text so an existing SQLite data directory keeps its rows unchanged.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

metadata = MetaData()
ACTIVE_ROWS = text("status IN ('queued', 'running')")

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("params", Text, nullable=False),
    Column("progress", Text, nullable=False, server_default="{}"),
    Column("result", Text),
    Column("error", Text),
    Column("created_at", String(32), nullable=False),
    Column("started_at", String(32)),
    Column("finished_at", String(32)),
    # 0002: several replicas
    Column("created_ns", BigInteger),  # orders jobs created within the same second
    Column("owner", String(255)),  # the replica (or CLI) running it: host:pid:random
    Column("lease_expires_at", Float),  # epoch seconds; the owner renews it while running
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # 0003: one active job per output directory; the training worker's heartbeat
    Column("writes_to", String(4096)),  # normalised output path of a training job
    Column("heartbeat_at", Float),  # the worker's last sign of progress (epoch seconds)
    Index("jobs_kind_created", "kind", "created_at"),
    Index("jobs_status_lease", "status", "lease_expires_at"),
    Index(
        "jobs_active_output",
        "writes_to",
        unique=True,
        sqlite_where=ACTIVE_ROWS,
        postgresql_where=ACTIVE_ROWS,
    ),
)
