"""``JobStore``: training jobs and evaluations as rows of one table, on SQLite or PostgreSQL.

One interface, two engines (SQLAlchemy 2): ``sqlite:///path`` (the embedded default; WAL, so
the server and its worker processes write one file) and ``postgresql+psycopg://...`` (several
replicas on several machines). Queued jobs are claimed with ``SELECT ... FOR UPDATE SKIP
LOCKED`` on PostgreSQL and inside a ``BEGIN IMMEDIATE`` transaction on SQLite, so each goes to
exactly one replica. Every change of a row sends ``NOTIFY gpt_jobs`` on PostgreSQL (see
``notify.py``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from gpt_service.store import migrate as migrations
from gpt_service.store.engine import NOTIFY_CHANNEL, StoreBase, StoreUnavailable
from gpt_service.store.records import (
    ACTIVE,
    G,
    JobKind,
    JobNotFound,
    JobRecord,
    JobStatus,
    OutputInUse,
    P,
    now_iso,
)
from gpt_service.store.schema import jobs

__all__ = ["NOTIFY_CHANNEL", "JobStore", "StoreUnavailable"]

JSON_COLUMNS = ("params", "progress", "result")


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_unset=False)
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value


def _partial(value: BaseModel | dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return value


class JobStore(StoreBase):
    def __init__(self, url: str, migrate: bool = True) -> None:
        """``migrate``: bring the schema to head first (servers and the CLI; workers skip it)."""
        super().__init__(url)
        if migrate:
            migrations.upgrade(self.engine)

    @staticmethod
    def _row(row: Any) -> dict[str, Any]:
        data = dict(row._mapping)
        for column in JSON_COLUMNS:
            raw = data.get(column)
            data[column] = json.loads(raw) if raw else ({} if column != "result" else None)
        return data

    # ---- rows ------------------------------------------------------------------------
    def create(
        self,
        kind: JobKind[P, G],
        params: P,
        progress: G | None = None,
        status: JobStatus = JobStatus.QUEUED,
        owner: str | None = None,
        lease_seconds: float | None = None,
    ) -> JobRecord[P, G]:
        values = {
            "id": str(uuid.uuid4()),
            "kind": kind.name,
            "status": status.value,
            "params": _dump(params),
            "progress": _dump(progress or kind.progress()),
            "created_at": now_iso(),
            "created_ns": time.time_ns(),
            "owner": owner,
            "cancel_requested": False,
        }
        if kind.writes_to is not None:
            values["writes_to"] = os.path.normpath(kind.writes_to(params))
        try:
            with self._tx() as db:
                if lease_seconds:
                    values["lease_expires_at"] = self._clock(db) + lease_seconds
                db.execute(jobs.insert().values(**values))
                self._notify(db, [values["id"]])
        except IntegrityError:
            raise self._output_in_use(values.get("writes_to")) from None
        return self.get(values["id"], kind)

    def _output_in_use(self, path: str | None) -> OutputInUse:
        """The error for a unique-index violation on ``writes_to``: name the job holding it."""
        query = select(jobs.c.id, jobs.c.status).where(
            jobs.c.writes_to == path, jobs.c.status.in_([s.value for s in ACTIVE])
        )
        with self._tx() as db:
            holder = db.execute(query).first()
        if holder is None:  # it finished meanwhile
            return OutputInUse(f"another job was writing to {path}; try again")
        return OutputInUse(f"job '{holder.id}' ({holder.status}) already writes to {path}")

    def get(self, job_id: str, kind: JobKind[P, G]) -> JobRecord[P, G]:
        with self._tx() as db:
            row = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None or row.kind != kind.name:
            raise JobNotFound(f"no {kind.name} job with id '{job_id}'")
        return kind.record(self._row(row))

    def update(
        self,
        job_id: str,
        *,
        only_if: Iterable[JobStatus] | None = None,
        progress: BaseModel | dict[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        """Set columns (models and dicts stored as JSON); ``progress`` is merged, not replaced.

        With ``only_if`` the row changes only while its status is one of those (a compare and
        set: ``finalize`` cannot overwrite a cancel made meanwhile on another replica).
        Returns whether the row changed.
        """
        values = {name: _dump(value) for name, value in fields.items()}
        if "status" in values and isinstance(values["status"], JobStatus):
            values["status"] = values["status"].value
        where = [jobs.c.id == job_id]
        if only_if is not None:
            where.append(jobs.c.status.in_([JobStatus(s).value for s in only_if]))
        try:
            return self._update(job_id, where, values, progress)
        except IntegrityError:  # queued again while another job writes its directory
            query = select(jobs.c.writes_to).where(jobs.c.id == job_id)
            with self._tx() as db:
                path = db.execute(query).scalar()
            raise self._output_in_use(path) from None

    def _update(
        self,
        job_id: str,
        where: list[Any],
        values: dict[str, Any],
        progress: BaseModel | dict[str, Any] | None,
    ) -> bool:
        with self._tx() as db:
            if progress is not None:
                query = select(jobs.c.progress).where(*where).with_for_update()
                current = db.execute(query).scalar()
                if current is None:
                    return False
                values["progress"] = json.dumps(
                    {**json.loads(current or "{}"), **_partial(progress)}, ensure_ascii=False
                )
            changed = db.execute(update(jobs).where(*where).values(**values)).rowcount > 0
            if changed:
                self._notify(db, [job_id])
        return changed

    def beat(self, job_id: str) -> None:
        """The worker's sign of progress (no NOTIFY: nothing a client shows changes)."""
        with self._tx() as db:
            db.execute(update(jobs).where(jobs.c.id == job_id).values(heartbeat_at=time.time()))

    def list(
        self,
        kind: JobKind[P, G],
        status: JobStatus | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[JobRecord[P, G]], int]:
        """Newest first; returns one page and the total count."""
        where = [jobs.c.kind == kind.name]
        if status:
            where.append(jobs.c.status == JobStatus(status).value)
        order = (jobs.c.created_at.desc(), jobs.c.created_ns.desc().nulls_last(), jobs.c.id)
        with self._tx() as db:
            total = db.execute(select(func.count()).select_from(jobs).where(*where)).scalar()
            rows = db.execute(
                select(jobs).where(*where).order_by(*order).limit(limit).offset(offset)
            ).all()
        return [kind.record(self._row(r)) for r in rows], int(total or 0)

    def count_by_status(self, kind_name: str) -> dict[str, int]:
        query = (
            select(jobs.c.status, func.count())
            .where(jobs.c.kind == kind_name)
            .group_by(jobs.c.status)
        )
        with self._tx() as db:
            return {status: n for status, n in db.execute(query).all()}

    # ---- replicas --------------------------------------------------------------------
    def claim(
        self,
        kind: JobKind[P, G],
        owner: str,
        limit: int,
        lease_seconds: float,
        job_id: str | None = None,
    ) -> list[JobRecord[P, G]]:
        """Take up to ``limit`` queued jobs (or just ``job_id``), oldest first, for ``owner``:
        each job goes to exactly one claimer, however many replicas ask at once."""
        if limit <= 0:
            return []
        where = [jobs.c.kind == kind.name, jobs.c.status == JobStatus.QUEUED.value]
        if job_id is not None:
            where.append(jobs.c.id == job_id)
        query = (
            select(jobs.c.id)
            .where(*where)
            .order_by(jobs.c.created_at, jobs.c.created_ns.nulls_first(), jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._tx() as db:
            ids = list(db.execute(query).scalars())
            if ids:
                db.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(ids))
                    .values(
                        status=JobStatus.RUNNING.value,
                        owner=owner,
                        lease_expires_at=self._clock(db) + lease_seconds,
                        cancel_requested=False,
                        finished_at=None,
                        error=None,
                    )
                )
                self._notify(db, ids)
        return [self.get(job_id, kind) for job_id in ids]

    def renew(self, owner: str, job_ids: Iterable[str], lease_seconds: float) -> dict[str, bool]:
        """Extend the leases ``owner`` holds; returns {job id: cancel requested} of those it
        still holds (a job missing from the answer was cancelled, expired or taken over)."""
        ids = list(job_ids)
        if not ids:
            return {}
        held = (
            jobs.c.id.in_(ids),
            jobs.c.owner == owner,
            jobs.c.status.in_([s.value for s in ACTIVE]),
        )
        with self._tx() as db:
            db.execute(
                update(jobs).where(*held).values(lease_expires_at=self._clock(db) + lease_seconds)
            )
            rows = db.execute(select(jobs.c.id, jobs.c.cancel_requested).where(*held)).all()
        return {job_id: bool(flag) for job_id, flag in rows}

    def expire_leases(self, kind: JobKind[P, G], dead_owners: Iterable[str] = ()) -> list[str]:
        """Active jobs whose lease ran out, or whose owner is known dead -> the kind's
        ``lost_status`` (``interrupted``, ``failed`` for evaluations) with its reason."""
        active = [JobStatus.RUNNING.value]
        if kind.owned_when_queued:
            active.append(JobStatus.QUEUED.value)
        dead = list(dead_owners)
        with self._tx() as db:
            gone = (jobs.c.lease_expires_at < self._clock(db)) | jobs.c.owner.is_(None)
            if dead:
                gone = gone | jobs.c.owner.in_(dead)
            where = (jobs.c.kind == kind.name, jobs.c.status.in_(active), gone)
            ids = list(db.execute(select(jobs.c.id).where(*where).with_for_update()).scalars())
            if ids:
                db.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(ids), jobs.c.status.in_(active))
                    .values(
                        status=kind.lost_status.value,
                        lease_expires_at=None,
                        error=func.coalesce(jobs.c.error, kind.lost_reason),
                        finished_at=now_iso(),
                    )
                )
                self._notify(db, ids)
        return ids

    def running_owners(self, kind: JobKind[P, G]) -> set[str]:
        query = select(jobs.c.owner).where(
            jobs.c.kind == kind.name, jobs.c.status.in_([s.value for s in ACTIVE])
        )
        with self._tx() as db:
            return {o for o in db.execute(query.distinct()).scalars() if o}

    def queue_depth(self) -> int:
        query = select(func.count()).where(jobs.c.status == JobStatus.QUEUED.value)
        with self._tx() as db:
            return int(db.execute(query.select_from(jobs)).scalar() or 0)

    def leases_held(self, owner: str) -> int:
        query = select(func.count()).where(
            jobs.c.owner == owner, jobs.c.status == JobStatus.RUNNING.value
        )
        with self._tx() as db:
            return int(db.execute(query.select_from(jobs)).scalar() or 0)
