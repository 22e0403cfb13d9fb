"""Several replicas: who runs a job, its lease, a cancel flag, a sub-second creation order.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("created_ns", sa.BigInteger))
    op.add_column("jobs", sa.Column("owner", sa.String(255)))
    op.add_column("jobs", sa.Column("lease_expires_at", sa.Float))
    op.add_column(
        "jobs",
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("jobs_status_lease", "jobs", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("jobs_status_lease", "jobs")
    for column in ("cancel_requested", "lease_expires_at", "owner", "created_ns"):
        op.drop_column("jobs", column)
