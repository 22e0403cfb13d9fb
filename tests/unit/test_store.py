"""The job store on both engines: SQLite (a file) and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from gpt_service.evaluation.spec import EVAL
from gpt_service.store.jobs import JobStore, StoreUnavailable
from gpt_service.store.leases import LeaseKeeper, owner_is_dead
from gpt_service.store.notify import ChangeFeed
from gpt_service.store.records import JobNotFound, JobStatus, OutputInUse
from gpt_service.training.config import TRAIN, TrainJobSpec, TrainParams


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url: str) -> Iterator[JobStore]:
    store = JobStore(url)
    yield store
    store.close()


def params(output: str = "/out/a") -> TrainParams:
    spec = TrainJobSpec(base_model="tiny", dataset_path="d.jsonl")
    return TrainParams(
        spec=spec, base_model_path="/m", dataset_file="/d.jsonl", output_dir="o", output_path=output
    )


def test_rows_are_typed_and_progress_merges(store: JobStore) -> None:
    job = store.create(TRAIN, params("/out/中文"))
    assert job.status is JobStatus.QUEUED and job.params.spec.base_model == "tiny"
    store.update(job.id, progress={"stage": "训练中", "current_step": 3})
    store.update(job.id, progress={"loss": 1.5, "loss_history": [{"step": 1, "loss": 2.0}]})
    again = store.get(job.id, TRAIN)
    assert again.params.output_path == "/out/中文"
    assert (again.progress.stage, again.progress.current_step) == ("训练中", 3)
    assert again.progress.loss_history[0].loss == 2.0
    with pytest.raises(JobNotFound):
        store.get(job.id, EVAL)  # the kind is part of the identity
    with pytest.raises(JobNotFound):
        store.get("nope", TRAIN)


def test_list_is_newest_first_within_one_second(store: JobStore) -> None:
    ids = [store.create(TRAIN, params(f"/out/{i}")).id for i in range(5)]
    page, total = store.list(TRAIN, limit=2)
    assert total == 5 and [j.id for j in page] == ids[:-3:-1]
    page, _ = store.list(TRAIN, limit=2, offset=4)
    assert [j.id for j in page] == [ids[0]]
    store.update(ids[1], status=JobStatus.CANCELLED)
    cancelled, total = store.list(TRAIN, status="cancelled")
    assert total == 1 and cancelled[0].id == ids[1]
    assert store.count_by_status("train") == {"queued": 4, "cancelled": 1}
    assert store.queue_depth() == 4


def test_compare_and_set(store: JobStore) -> None:
    job = store.create(TRAIN, params())
    assert not store.update(job.id, only_if=[JobStatus.RUNNING], status=JobStatus.COMPLETED)
    assert store.update(job.id, only_if=[JobStatus.QUEUED], status=JobStatus.CANCELLED)
    assert store.get(job.id, TRAIN).status is JobStatus.CANCELLED


def test_each_queued_job_is_claimed_once_by_concurrent_claimers(url: str) -> None:
    store = JobStore(url)
    ids = {store.create(TRAIN, params(f"/out/{i}")).id for i in range(12)}

    def claim(n: int) -> list[str]:
        return [j.id for j in JobStore(url, migrate=False).claim(TRAIN, f"r{n}", 3, 30)]

    with ThreadPoolExecutor(4) as pool:
        claimed = list(pool.map(claim, range(4)))
    flat = [job_id for batch in claimed for job_id in batch]
    assert sorted(flat) == sorted(ids)  # every job once, none twice
    assert all(len(batch) == 3 for batch in claimed)  # at most `limit` each
    job = store.get(claimed[0][0], TRAIN)
    assert job.status is JobStatus.RUNNING and job.owner == "r0"
    assert job.lease_expires_at and job.lease_expires_at > time.time()
    assert store.claim(TRAIN, "late", 5, 30) == []
    assert store.leases_held("r0") == 3


def test_one_active_job_per_output_directory_whatever_the_replica(url: str) -> None:
    """Two replicas (two stores on one database) submitting to one directory at once: one
    job is queued, every other submit is refused; a stopped job frees it, and resuming that
    job is refused while another writes there."""
    replicas = [JobStore(url), JobStore(url, migrate=False)]

    def submit(n: int) -> str | None:
        try:
            return replicas[n % 2].create(TRAIN, params("/out/same/")).id
        except OutputInUse as exc:
            assert "already writes to /out/same" in exc.message
            return None

    with ThreadPoolExecutor(4) as pool:
        made = [job_id for job_id in pool.map(submit, range(8)) if job_id]
    assert len(made) == 1
    first = made[0]
    replicas[0].claim(TRAIN, "r0", 1, 30)
    replicas[0].update(first, status=JobStatus.INTERRUPTED)
    second = replicas[1].create(TRAIN, params("/out/same"))  # the directory is free again
    with pytest.raises(OutputInUse, match=f"'{second.id}' \\(queued\\)"):
        replicas[0].update(first, only_if=[JobStatus.INTERRUPTED], status=JobStatus.QUEUED)
    assert replicas[0].get(first, TRAIN).status is JobStatus.INTERRUPTED
    replicas[1].update(second.id, status=JobStatus.COMPLETED)
    assert replicas[0].update(first, only_if=[JobStatus.INTERRUPTED], status=JobStatus.QUEUED)
    for replica in replicas:
        replica.close()


def test_leases_renew_expire_and_report_cancels(store: JobStore) -> None:
    a, b, c = (store.create(TRAIN, params(f"/out/{i}")).id for i in range(3))
    store.claim(TRAIN, "alive", 2, 30)
    store.claim(TRAIN, "dead", 1, 0.01)
    time.sleep(0.05)
    assert store.renew("alive", [a, b], 30) == {a: False, b: False}
    assert store.expire_leases(TRAIN) == [c]
    interrupted = store.get(c, TRAIN)
    assert interrupted.status is JobStatus.INTERRUPTED and "resume" in interrupted.error
    store.update(b, status=JobStatus.CANCELLED, cancel_requested=True)
    assert store.renew("alive", [a, b], 30) == {a: False}  # b is no longer held
    assert store.expire_leases(TRAIN, dead_owners=["alive"]) == [a]


def test_a_dead_owner_on_this_host_is_dead_at_once(store: JobStore) -> None:
    keeper = LeaseKeeper(store, 30, [TRAIN])
    host = keeper.owner.split(":")[0]
    assert owner_is_dead(f"{host}:999999999:abc", keeper.owner)  # no such process
    assert not owner_is_dead(keeper.owner, keeper.owner)
    assert not owner_is_dead("other-host:999999999:abc", keeper.owner)
    job = store.create(TRAIN, params())
    store.claim(TRAIN, f"{host}:999999999:abc", 1, 3600)
    assert keeper.sweep() == [job.id]


async def test_lease_keeper_stops_what_was_cancelled_elsewhere(store: JobStore) -> None:
    keeper = LeaseKeeper(store, 3, [TRAIN])
    job = store.create(TRAIN, params())
    store.claim(TRAIN, keeper.owner, 1, 3)
    lost: list[str] = []
    keeper.hold(job.id, lost.append)
    keeper.renew()
    assert lost == [] and store.get(job.id, TRAIN).lease_expires_at > time.time() + 2
    store.update(job.id, status=JobStatus.CANCELLED, cancel_requested=True)  # another replica
    keeper.renew()
    assert lost == [job.id] and keeper.held == []


async def test_change_feed_wakes_on_a_change(store: JobStore) -> None:
    feed = ChangeFeed(store)
    await feed.start()
    try:
        job = store.create(TRAIN, params())
        if store.is_postgres:
            for _ in range(100):
                if feed.is_listening:
                    break
                await asyncio.sleep(0.05)
            assert feed.is_listening
        waiter = asyncio.create_task(feed.wait(job.id, 1.5))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(store.update, job.id, progress={"stage": "x"})
        woke = await waiter
        assert woke is store.is_postgres  # pushed by NOTIFY; SQLite polls (times out)
    finally:
        await feed.stop()


def test_eval_rows_of_a_gone_replica_fail_with_the_reason(store: JobStore) -> None:
    """An evaluation cannot resume (its inline samples are not stored): it fails, saying so,
    rather than staying ``running`` or ``interrupted`` with nothing to resume it."""
    from gpt_service.evaluation.spec import EvalParams, EvalProgress

    row = store.create(EVAL, EvalParams(model_name="m", num_samples=2), EvalProgress(), owner="x")
    store.update(row.id, lease_expires_at=time.time() - 1)
    assert store.expire_leases(EVAL) == [row.id]
    lost = store.get(row.id, EVAL)
    assert lost.status is JobStatus.FAILED and lost.finished_at
    assert "went away" in lost.error and "submit it again" in lost.error
    queued_train = store.create(TRAIN, params())
    assert store.expire_leases(TRAIN) == []  # a queued training job waits for any replica
    assert store.get(queued_train.id, TRAIN).status is JobStatus.QUEUED


def _open(url: str) -> str:
    JobStore(url).close()
    return "ok"


def test_concurrent_first_starts_migrate_once(url: str) -> None:
    with ThreadPoolExecutor(4) as pool:  # one engine, so one connection, each
        assert list(pool.map(_open, [url] * 4)) == ["ok"] * 4
    store = JobStore(url)
    with store.engine.connect() as db:
        versions = db.execute(text("SELECT version_num FROM alembic_version")).all()
    assert versions == [("0003",)]
    assert {"jobs", "alembic_version"} <= set(inspect(store.engine).get_table_names())


def test_an_existing_sqlite_data_directory_keeps_its_jobs(tmp_path: Path) -> None:
    """A database the SQLite-only store wrote (no Alembic table) is adopted, rows intact."""
    path = tmp_path / "gpt_service.sqlite3"
    legacy = sqlite3.connect(path)
    legacy.executescript(
        """CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
        params TEXT NOT NULL, progress TEXT NOT NULL DEFAULT '{}', result TEXT, error TEXT,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);"""
    )
    old = {**params().model_dump(mode="json"), "owner_pid": 12345}
    legacy.execute(
        "INSERT INTO jobs (id, kind, status, params, progress, created_at) VALUES (?,?,?,?,?,?)",
        ("old", "train", "running", json.dumps(old), '{"current_step": 7}', "2025-01-01T00:00:00"),
    )
    legacy.commit()
    legacy.close()
    store = JobStore(f"sqlite:///{path}")
    job = store.get("old", TRAIN)
    assert job.progress.current_step == 7 and job.params.output_path == "/out/a"
    with pytest.raises(OutputInUse, match="'old' \\(running\\)"):  # the migration knows its dir
        store.create(TRAIN, params())
    assert store.expire_leases(TRAIN) == ["old"]  # running with no owner: nobody runs it


def test_a_database_that_goes_away_is_a_clear_503(postgres_server: str) -> None:
    from tests.postgres import create_database

    url = create_database(postgres_server)
    store = JobStore(url)
    job = store.create(TRAIN, params())
    name = url.rsplit("/", 1)[1]
    admin = JobStore(postgres_server, migrate=False)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    with pytest.raises(StoreUnavailable, match="job store \\(postgresql\\) is unreachable"):
        store.get(job.id, TRAIN)
    assert store.ping() is False
