"""A small job store on SQLite: one row per training job or evaluation, JSON for the rest.

Each call opens its own connection (SQLite connections are cheap and not thread-safe), with
WAL so that the server and the training worker processes can write the same file.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpt_service.errors import NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_kind_created ON jobs (kind, created_at);
"""


class JobNotFound(NotFound):
    pass


def now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


@dataclass
class JobRecord:
    id: str
    kind: str
    status: str
    params: dict[str, Any]
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        return cls(
            id=row["id"],
            kind=row["kind"],
            status=row["status"],
            params=json.loads(row["params"]),
            progress=json.loads(row["progress"] or "{}"),
            result=json.loads(row["result"]) if row["result"] else None,
            error=row["error"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # commits, or rolls back on error
                yield db
        finally:
            db.close()

    def create(self, kind: str, params: dict[str, Any], status: str = "queued") -> JobRecord:
        record = JobRecord(id=str(uuid.uuid4()), kind=kind, status=status, params=params)
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, status, params, created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    record.id,
                    kind,
                    status,
                    json.dumps(params, ensure_ascii=False),
                    record.created_at,
                ),
            )
        return record

    def get(self, job_id: str, kind: str | None = None) -> JobRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or (kind is not None and row["kind"] != kind):
            raise JobNotFound(f"no {kind or 'job'} with id '{job_id}'")
        return JobRecord.from_row(row)

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns; dict values are stored as JSON. ``progress`` is merged, not replaced."""
        if "progress" in fields:
            current = self.get(job_id).progress
            fields["progress"] = {**current, **fields["progress"]}
        columns = ", ".join(f"{name} = ?" for name in fields)
        values = [
            json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for v in fields.values()
        ]
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values, job_id))

    def list(
        self, kind: str, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[JobRecord], int]:
        """Newest first; returns one page and the total count."""
        where, args = "kind = ?", [kind]
        if status:
            where, args = where + " AND status = ?", [*args, status]
        with self._connect() as db:
            total = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [JobRecord.from_row(r) for r in rows], total

    def count_by_status(self, kind: str) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT status, COUNT(*) FROM jobs WHERE kind = ? GROUP BY status", (kind,)
            ).fetchall()
        return {status: n for status, n in rows}

    def mark_interrupted(self, kind: str, statuses: tuple[str, ...] = ("running",)) -> list[str]:
        """On start-up: jobs a previous process left running can no longer be running."""
        marks = ",".join("?" * len(statuses))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT id FROM jobs WHERE kind = ? AND status IN ({marks})", (kind, *statuses)
            ).fetchall()
            db.execute(
                f"UPDATE jobs SET status = 'interrupted' WHERE kind = ? AND status IN ({marks})",
                (kind, *statuses),
            )
        return [r[0] for r in rows]
