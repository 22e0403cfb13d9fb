"""The job store out of reach: start-up says so in one line (exit 2), the training scheduler
logs the outage once (not every poll), and ``JobManager`` waits for the store off the event
loop. Real SQLite files and real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpt_service.store.jobs import JobStore
from gpt_service.store.leases import LeaseKeeper
from gpt_service.store.records import JobStatus
from gpt_service.training.config import TRAIN, TrainJobSpec, TrainParams
from gpt_service.training.jobs import JobManager
from tests.conftest import make_settings
from tests.server import free_port

WAIT = 30


class Listener:
    """A TCP port on 127.0.0.1 that accepts connections and then either closes them at once
    (a database that drops every connection) or never says a word (a silent host)."""

    def __init__(self, silent: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        self.accepted = 0
        self.enough = threading.Event()  # 10 connections were attempted
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted >= 10:
                self.enough.set()
            if self.silent:
                self.held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def dropping() -> Iterator[Listener]:
    listener = Listener(silent=False)
    yield listener
    listener.close()


def _params() -> TrainParams:
    spec = TrainJobSpec(base_model="tiny", dataset_path="d.jsonl")
    return TrainParams(
        spec=spec, base_model_path="/m", dataset_file="/d.jsonl", output_dir="o", output_path="/o"
    )


def _manager(tmp_path: Path, store: JobStore, poll_interval: float = 0.5) -> JobManager:
    settings = make_settings(tmp_path)
    leases = LeaseKeeper(store, 30.0, [TRAIN])
    return JobManager(settings, store, None, leases, poll_interval)  # type: ignore[arg-type]


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "silent"])
def test_an_unreachable_database_ends_start_up_with_one_line_and_status_2(
    tmp_path: Path, silent: bool
) -> None:
    listener = Listener(silent=True) if silent else None
    port = listener.port if listener else free_port()  # nothing listens: refused
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GPT_SERVICE_")}
    env = {
        **clean,
        "GPT_SERVICE_DATABASE_URL": f"postgresql+psycopg://u:pw-secret@127.0.0.1:{port}/jobs",
        "GPT_SERVICE_DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "gpt_service.cli", "serve", "--port", "1"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        if listener:
            listener.close()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"error: GPT_SERVICE_DATABASE_URL: the job store postgresql+psycopg://u:***@127.0.0.1:{port}"
        "/jobs is unreachable: "
    )


async def test_a_database_outage_is_logged_once_not_every_poll(
    tmp_path: Path, dropping: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    store = JobStore(f"postgresql+psycopg://u@127.0.0.1:{dropping.port}/jobs", migrate=False)
    manager = _manager(tmp_path, store, poll_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="gpt_service.training.jobs"):
        await manager.start()
        assert await asyncio.to_thread(dropping.enough.wait, WAIT)  # 10 failed rounds at least
        await manager.stop()
    store.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "gpt_service.training.jobs"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("training scheduler: the job store (postgresql) is unreachable")


async def test_job_manager_waits_for_a_locked_store_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(f"sqlite:///{path}")
    job = store.create(TRAIN, _params())
    manager = _manager(tmp_path, store)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        cancelling = asyncio.create_task(manager.cancel(job.id))
        for _ in range(10):  # the event loop keeps running while the store call waits
            await asyncio.sleep(0.02)
        assert not cancelling.done()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    cancelled = await asyncio.wait_for(cancelling, WAIT)
    assert cancelled.status is JobStatus.CANCELLED
    store.close()
