"""Two server replicas, one real PostgreSQL, one shared data directory.

A job submitted on one replica is listed, streamed and cancelled from the other (which does
not run it); a job whose replica dies with its worker (SIGKILL) becomes ``interrupted`` on
the survivor once its lease runs out, and resumed there it continues from its checkpoint.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import psutil

from tests.e2e.test_training import ENV, TINY, make_data_dir, wait_done, wait_for
from tests.server import RunningServer, start_servers

LEASE_SECONDS = 3  # a dead replica's job is interrupted after ~4 s (30 s by default)
LONG = {"num_epochs": 1000, "batch_size": 1}


def replica_env(url: str, name: str) -> dict[str, str]:
    return {
        **ENV,
        "GPT_SERVICE_DATABASE_URL": url,
        "GPT_SERVICE_REPLICA_NAME": name,
        "GPT_SERVICE_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    }


def submit(api: httpx.Client, **fields: object) -> str:
    body = {"base_model": "tiny", "dataset_path": "datasets/memorize.jsonl", **fields}
    response = api.post("/train", json=body)
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


def workers_of(server: RunningServer) -> list[psutil.Process]:
    """Live worker processes of a server (an exited one not yet reaped does not count)."""
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if "gpt_service.training.worker" in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


def owner_and_other(servers: list[RunningServer], status: dict) -> tuple[int, int]:
    """Indexes of the replica running the job and of the other one."""
    pid = int(status["replica"].split(":")[1])
    owner = next(i for i, s in enumerate(servers) if s.process.pid == pid)
    return owner, 1 - owner


def sse_events(api: httpx.Client, task_id: str, until: str) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    with api.stream("GET", f"/train/status/{task_id}/stream", params={"interval": 5}) as sse:
        event = None
        for line in sse.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event or "", json.loads(line.split(":", 1)[1])))
                if event == until:
                    return events
    return events


def test_two_replicas_one_postgres(tmp_path: Path, postgres_url: str) -> None:
    data_dir = make_data_dir(tmp_path / "shared")
    envs = [replica_env(postgres_url, name) for name in ("A", "B")]
    with start_servers(data_dir, *TINY, envs=envs) as servers:
        # Started at the same instant: one of them migrated the schema, neither failed.
        logs = [s.log() for s in servers]
        assert sum("job store schema migrated from nothing to 0003" in log for log in logs) == 1
        assert not any("Traceback" in log for log in logs), logs
        apis = [httpx.Client(base_url=s.url, timeout=60) for s in servers]
        a, b = apis

        first = submit(a, output_dir="models/lora/first", **LONG)
        status = wait_for(b, first, lambda s: s["status"] == "running" and s["current_step"] >= 2)
        owner, other = owner_and_other(servers, status)
        assert status["replica"].startswith("AB"[owner] + ":")
        listed = apis[other].get("/train/history").json()["tasks"]
        assert [t["task_id"] for t in listed] == [first]
        health = apis[owner].get("/health").json()["store"]
        assert health["engine"] == "postgresql" and health["reachable"] is True
        assert health["leases_held"] == 1 and health["queue_depth"] == 0
        assert health["push"] is True  # progress streams are woken by NOTIFY
        assert apis[other].get("/health").json()["store"]["leases_held"] == 0
        metrics = apis[other].get("/metrics").text
        assert 'gpt_store_up{engine="postgresql"} 1.0' in metrics
        assert 'gpt_jobs{kind="train",status="running"} 1.0' in metrics

        # Streamed from the replica that does not run it, pushed by NOTIFY: each step shows.
        with httpx.Client(base_url=servers[other].url, timeout=60) as streamer:
            seen = []
            with streamer.stream("GET", f"/train/status/{first}/stream") as sse:
                for line in sse.iter_lines():
                    if line.startswith("data:"):
                        seen.append(json.loads(line.split(":", 1)[1])["current_step"])
                    if len(set(seen)) >= 3:
                        break
        assert len(set(seen)) >= 3 and seen == sorted(seen)

        # Cancelled from the other replica: the worker on the owner stops.
        response = apis[other].post(f"/train/{first}/cancel")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        deadline = time.monotonic() + 20
        while workers_of(servers[owner]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert workers_of(servers[owner]) == []
        assert sse_events(apis[owner], first, "end")[-1] == ("end", {"status": "cancelled"})

        # A replica dies with its worker mid-run: the survivor sees it interrupted.
        body = {"output_dir": "models/lora/second", "max_steps": 200, "batch_size": 1}
        second = submit(apis[other], **body, save_steps=5)
        checkpoint = data_dir / "models/lora/second/checkpoints/checkpoint-5/trainer_state.json"
        deadline = time.monotonic() + 120
        while not checkpoint.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        status = apis[other].get(f"/train/status/{second}").json()
        dying, survivor = owner_and_other(servers, status)
        victims = [servers[dying].process, *workers_of(servers[dying])]
        for process in victims:
            process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        api = apis[survivor]
        status = wait_for(api, second, lambda s: s["status"] == "interrupted", timeout=60)
        assert time.monotonic() - killed_at < 60
        assert status["replica"] is None and status["current_step"] >= 5

        response = api.post(f"/train/{second}/resume")
        assert response.status_code == 200 and response.json()["status"] == "queued"
        status = wait_done(api, second)
        assert status["status"] == "completed", status["error"]
        assert status["result"]["resumed_from"].startswith("checkpoint-")
        assert status["current_step"] == 200
        for client in apis:
            client.close()
    assert not list(data_dir.rglob("*.sqlite3*"))  # everything went to PostgreSQL
