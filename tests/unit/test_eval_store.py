"""``EvaluationManager`` reads the store in a thread: a store call that waits (a SQLite write
lock held by another process) does not stop the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from gpt_service.evaluation.runner import EvaluationManager
from gpt_service.evaluation.spec import EVAL, EvalParams, EvalProgress
from gpt_service.store.jobs import JobStore
from gpt_service.store.leases import LeaseKeeper
from tests.conftest import make_settings

LOCK_SECONDS = 2.0


async def _while_locked(path: str, call: Callable[[], Awaitable[object]]) -> list[str]:
    """Run ``call`` while another connection holds the write lock for ``LOCK_SECONDS``, next
    to a coroutine that needs the loop for a quarter of that; the order they finished in."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write lock
    threading.Timer(LOCK_SECONDS, other.rollback).start()
    order: list[str] = []

    async def ticker() -> None:
        for _ in range(5):
            await asyncio.sleep(LOCK_SECONDS / 20)
        order.append("loop ran")

    async def read() -> None:
        await call()
        order.append("store answered")

    await asyncio.gather(read(), ticker())
    other.close()
    return order


async def test_get_and_list_wait_for_the_store_off_the_event_loop(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.ensure_dirs()
    store = JobStore(settings.store_url)
    leases = LeaseKeeper(store, 30, [EVAL])
    evaluator = EvaluationManager(settings, store, None, None, leases)  # type: ignore[arg-type]
    row = store.create(EVAL, EvalParams(model_name="m", num_samples=1), EvalProgress())
    path = str(store.engine.url.database)
    try:
        for call in (evaluator.list, lambda: evaluator.get(row.id)):
            assert await _while_locked(path, call) == ["loop ran", "store answered"]
    finally:
        store.close()
