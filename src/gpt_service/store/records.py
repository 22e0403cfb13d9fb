"""Typed job rows: one status enum and one record shape for training jobs and evaluations.

A kind (``JobKind``) names the pydantic models of its ``params`` and ``progress``; the store
validates every row it reads into ``JobRecord[Params, Progress]``, so callers read attributes,
never string keys of a JSON dict.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from gpt_service.errors import Conflict, NotFound


class JobNotFound(NotFound):
    pass


class OutputInUse(Conflict):
    """Another queued or running job writes the same directory (409)."""


class JobStatus(StrEnum):
    """The lifecycle every job shares: queued -> running -> completed | failed | cancelled |
    interrupted (its process or machine went away; resumable)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def is_stopped(self) -> bool:
        """No process will move it on: streams end, ``resume`` becomes possible."""
        return not self.is_active

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def is_resumable(self) -> bool:
        return self in (JobStatus.INTERRUPTED, JobStatus.FAILED, JobStatus.CANCELLED)


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
STOPPED = frozenset(s for s in JobStatus if s.is_stopped)


def now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def new_owner_id(replica_name: str | None = None) -> str:
    """Who runs a job: ``host:pid:random``; the pid lets a restart on the same host tell a
    dead owner at once instead of waiting for its lease to expire."""
    import os

    host = (replica_name or socket.gethostname()).replace(":", "_")
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


P = TypeVar("P", bound=BaseModel)
G = TypeVar("G", bound=BaseModel)


class JobRecord(BaseModel, Generic[P, G]):
    id: str
    kind: str
    status: JobStatus
    params: P
    progress: G
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: str = Field(default_factory=now_iso)
    started_at: str | None = None
    finished_at: str | None = None
    owner: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    heartbeat_at: float | None = None


@dataclass(frozen=True)
class JobKind(Generic[P, G]):
    """A kind of job: its name in the ``kind`` column and the models of its JSON columns."""

    name: str
    params: type[P]
    progress: type[G]
    # Runs inside its owner's process from the moment it is queued (an evaluation), rather
    # than waiting in a shared queue for any replica (a training job).
    owned_when_queued: bool = False
    # The directory a job writes (a training job's output): at most one queued or running
    # job per directory, enforced by the store (a unique index), whatever the replica.
    writes_to: Callable[[P], str] | None = None
    # What a job becomes when its owner is gone (lease expired, process dead), and why.
    lost_status: JobStatus = JobStatus.INTERRUPTED
    lost_reason: str = (
        "the replica running it went away (server or machine gone, its lease expired); "
        "resume continues from the last checkpoint"
    )

    def record(self, row: dict[str, Any]) -> JobRecord[P, G]:
        return JobRecord[self.params, self.progress].model_validate(row)  # type: ignore[name-defined]
