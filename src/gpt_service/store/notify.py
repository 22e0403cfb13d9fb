"""``ChangeFeed``: wake a progress stream when its job's row changes, on any replica.

On PostgreSQL one ``LISTEN gpt_jobs`` connection per replica receives the job id of every
change (the store sends ``pg_notify`` in the changing transaction, so a notification means
a committed change) and wakes the streams of that job. On SQLite there is nothing to listen
to: a stream waits its polling interval. A lost listener connection falls back to polling
until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.engine import make_url

from gpt_service.store.jobs import NOTIFY_CHANNEL, JobStore

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 2.0


class ChangeFeed:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.is_listening = False

    async def start(self) -> None:
        if self.store.is_postgres:
            self._task = asyncio.create_task(self._listen(), name="job-change-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, job_id: str, timeout: float) -> bool:
        """Until the job changes (True) or ``timeout`` seconds pass (False)."""
        if not self.is_listening:
            await asyncio.sleep(timeout)
            return False
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(job_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(job_id, None)

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    async def _listen(self) -> None:
        import psycopg

        url = make_url(self.store.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.is_listening = True
                    async for notification in connection.notifies():
                        self._wake(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("job change feed lost its connection (%s); polling meanwhile", exc)
            finally:
                self.is_listening = False
                for job_id in list(self._waiters):  # let streams re-read rather than hang
                    self._wake(job_id)
            await asyncio.sleep(RECONNECT_SECONDS)
