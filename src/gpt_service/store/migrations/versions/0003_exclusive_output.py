"""One active job per output directory (a unique index only over queued and running rows), and
a heartbeat the training worker writes (so its replica can tell a hung worker).

Revision ID: 0003
Revises: 0002
"""

import json
import os

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'running')")


def _backfill() -> None:
    """Existing training rows get their output directory; should two active rows already
    share one (the old check was not atomic), the newer keeps none."""
    db = op.get_bind()
    rows = db.execute(
        sa.text("SELECT id, status, params FROM jobs WHERE kind = 'train' ORDER BY created_at")
    ).all()
    active: set[str] = set()
    for job_id, status, params in rows:
        try:
            path = os.path.normpath(json.loads(params)["output_path"])
        except (ValueError, KeyError, TypeError):
            continue
        if status in ("queued", "running"):
            if path in active:
                continue
            active.add(path)
        db.execute(
            sa.text("UPDATE jobs SET writes_to = :path WHERE id = :id"),
            {"path": path, "id": job_id},
        )


def upgrade() -> None:
    op.add_column("jobs", sa.Column("writes_to", sa.String(4096)))
    op.add_column("jobs", sa.Column("heartbeat_at", sa.Float))
    _backfill()
    op.create_index(
        "jobs_active_output",
        "jobs",
        ["writes_to"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("jobs_active_output", "jobs")
    op.drop_column("jobs", "heartbeat_at")
    op.drop_column("jobs", "writes_to")
