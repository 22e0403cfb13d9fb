"""``LeaseKeeper``: the part of the job lifecycle every replica runs, for every kind of job.

A running job is held by one owner (a server replica, or ``gpt-service train``) under a lease
that the owner renews every third of ``lease_seconds``. Every replica also sweeps: a job whose
lease ran out (its machine died: server and worker gone) becomes ``interrupted``, visible to
all replicas and resumable on any of them. A job the owner no longer holds when it renews
(cancelled from another replica, or swept after a stall) is handed to the owner's ``on_lost``
callback, which stops the work. An owner on this host whose process is gone is dead at once,
without waiting for its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from gpt_service.store.jobs import JobStore, StoreUnavailable
from gpt_service.store.outage import OutageLog
from gpt_service.store.records import JobKind, new_owner_id

logger = logging.getLogger(__name__)


def owner_is_dead(owner: str, me: str) -> bool:
    """An owner id ``host:pid:random`` on this host whose process is gone (or restarted)."""
    import psutil

    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    my_host = me.partition(":")[0]
    if host != my_host or not pid_text.isdigit() or owner == me:
        return False
    pid = int(pid_text)
    return pid == os.getpid() or not psutil.pid_exists(pid)


class LeaseKeeper:
    def __init__(
        self,
        store: JobStore,
        lease_seconds: float,
        kinds: Sequence[JobKind[Any, Any]],
        replica_name: str | None = None,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.kinds = list(kinds)
        self.owner = new_owner_id(replica_name)
        self._held: dict[str, Callable[[str], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog(logger, "job leases (renew and sweep)")

    @property
    def interval(self) -> float:
        return self.lease_seconds / 3

    @property
    def held(self) -> list[str]:
        return list(self._held)

    def hold(self, job_id: str, on_lost: Callable[[str], None]) -> None:
        self._held[job_id] = on_lost

    def release(self, job_id: str) -> None:
        self._held.pop(job_id, None)

    async def start(self) -> None:
        await asyncio.to_thread(self.sweep)
        self._task = asyncio.create_task(self._run(), name="job-leases")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.renew)
                await asyncio.to_thread(self.sweep)
                self._outage.ok()
            except StoreUnavailable as exc:  # the database is away: the next round tries again
                self._outage.failed(exc.message)
            except Exception:
                logger.warning("could not renew or sweep job leases", exc_info=True)

    def renew(self) -> None:
        held = self.held
        still = self.store.renew(self.owner, held, self.lease_seconds)
        for job_id in held:
            if job_id not in still or still[job_id]:
                logger.warning("job %s is no longer ours (cancelled or expired): stopping", job_id)
                on_lost = self._held.pop(job_id, None)
                if on_lost is not None:
                    on_lost(job_id)

    def sweep(self) -> list[str]:
        """Interrupt the jobs whose owner is gone; returns their ids."""
        gone: list[str] = []
        for kind in self.kinds:
            owners = self.store.running_owners(kind)
            dead = [o for o in owners if owner_is_dead(o, self.owner)]
            gone += self.store.expire_leases(kind, dead)
        if gone:
            logger.warning("jobs whose owner is gone are now interrupted: %s", gone)
        return gone
