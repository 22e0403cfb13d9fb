"""LoRA fine-tuning jobs through the HTTP API of a real server process, on a tiny model.

Each training here is a few dozen steps of a ~0.2M-parameter Llama; the demo task (a real
model learning a real task) is in test_training_demo.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gpt_service.store.jobs import JobStore
from gpt_service.training.config import TRAIN
from tests.server import RunningServer, start_server
from tests.tiny_models import save_llama

TINY = ("--model", "tiny", "--model-path", "models/tiny-llama")
# One torch thread per worker: a tiny model on a shared 2-core machine trains several times
# faster without thread oversubscription.
ENV = {"GPT_SERVICE_TRAINING__NUM_THREADS": "1"}
# Two prompts with their own answers: the adapter must learn both (a base that ignores its
# input cannot pass).
MEMORIZE = [
    {"prompt": "say hi", "completion": "hello world"},
    {"prompt": "说中文", "completion": "你好，世界！"},
] * 8


def make_data_dir(root: Path) -> Path:
    save_llama(root / "models" / "tiny-llama")
    datasets = root / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in MEMORIZE]
    (datasets / "memorize.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(
        make_data_dir(tmp_path_factory.mktemp("train-data")), *TINY, env=ENV
    ) as running:
        yield running


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def submit(api: httpx.Client, **fields: object) -> str:
    body = {"base_model": "tiny", "dataset_path": "datasets/memorize.jsonl", **fields}
    response = api.post("/train", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "success"
    return response.json()["task_id"]


def wait_for(api: httpx.Client, task_id: str, until: object, timeout: float = 180) -> dict:
    """Poll the status until ``until(status_dict)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"/train/status/{task_id}").json()
        if until(status):  # type: ignore[operator]
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {task_id} never got there: {status}")


def wait_done(api: httpx.Client, task_id: str, timeout: float = 180) -> dict:
    return wait_for(api, task_id, lambda s: s["status"] not in ("queued", "running"), timeout)


def chat(api: httpx.Client, model: str, prompt: str) -> str:
    body = {"model_name": model, "messages": [{"role": "user", "content": prompt}]}
    response = api.post("/chat", json={**body, "max_tokens": 8, "temperature": 0})
    assert response.status_code == 200, response.text
    return response.json()["text"]


def worker_processes(server: RunningServer) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [p for p in children if "gpt_service.training.worker" in " ".join(p.cmdline())]


def test_train_watch_complete_and_serve_the_adapter(
    api: httpx.Client, server: RunningServer
) -> None:
    task_id = submit(
        api,
        output_dir="models/lora/memorize",
        num_epochs=20,
        batch_size=4,
        learning_rate=1e-2,
        lora_r=8,
        lora_alpha=16,
        save_steps=20,
        load_on_completion=True,
    )
    events = []
    with api.stream("GET", f"/train/status/{task_id}/stream", params={"interval": 0.1}) as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in sse.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    assert events[-1] == ("end", {"status": "completed"})
    running = [d for e, d in events if e == "progress" and d["status"] == "running"]
    assert any(0 < d["current_step"] < d["total_steps"] for d in running), running
    assert any(d["loss"] is not None and d["eta_seconds"] is not None for d in running)

    status = api.get(f"/train/status/{task_id}").json()
    assert status["status"] == "completed" and status["progress"] == 100.0
    assert status["current_step"] == status["total_steps"] == 80
    assert status["current_epoch"] == 20 and status["total_epochs"] == 20
    assert status["output_dir"] == "models/lora/memorize"
    assert status["started_at"] and status["finished_at"] and status["error"] is None
    assert [p["step"] for p in status["loss_history"]] == list(range(1, 81))
    log = (server.data_dir / "logs" / f"train-{task_id}.log").read_text()
    assert "finished training" in log
    assert "is_gradient_checkpointing" not in log and "FutureWarning" not in log, log
    assert status["loss_history"][-1]["loss"] < status["loss_history"][0]["loss"]

    adapter = server.data_dir / "models/lora/memorize"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (adapter / name).is_file(), name
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["metrics"]["global_step"] == 80 and metrics["base_model"] == "tiny"
    assert (adapter / "checkpoints" / "checkpoint-80").is_dir()

    # load_on_completion put the adapter on the loaded base model ...
    served = status["result"]["served_as"]
    assert served == "tiny:memorize"
    assert chat(api, served, "say hi") == "hello world"
    assert chat(api, served, "说中文") == "你好，世界！"
    assert chat(api, "tiny", "say hi") != "hello world"  # the base alone never learnt it
    # ... and POST /models/load serves it as a model of its own.
    body = {"model_name": "tiny-tuned", "model_path": "models/tiny-llama"}
    response = api.post("/models/load", json={**body, "lora_adapter": "models/lora/memorize"})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["lora_adapter"] == str(adapter.resolve())
    assert chat(api, "tiny-tuned", "say hi") == "hello world"
    assert api.post("/models/unload", params={"model_name": "tiny-tuned"}).status_code == 200


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"dataset_path": "datasets/broken.jsonl"}, 400, "row 2"),
        ({"dataset_path": "datasets/absent.jsonl"}, 404, "does not exist"),
        ({"dataset_path": "../../etc/passwd"}, 400, "outside"),
        ({"dataset_format": "parquet"}, 400, "dataset_format"),
        ({"base_model": "no-such-model"}, 404, "no-such-model"),
        ({"base_model": "nobody/absent-model"}, 404, "local cache"),
        ({"output_dir": "/tmp/elsewhere"}, 400, "outside"),
        ({"output_dir": "models/lora/taken"}, 400, "already holds an adapter"),
        ({"num_epochs": 0}, 400, "num_epochs"),
        ({"dataset_path": "datasets/a\u0000b.jsonl"}, 400, "unusable path"),
        ({"load_on_completion": True, "served_model_name": "../x"}, 400, "served_model_name"),
        ({"modules_to_save": ["lm head"]}, 400, "modules_to_save"),
        ({"trainable_token_indices": [-1]}, 400, "trainable_token_indices"),
        ({"trainable_token_indices": {"embed_tokens": []}}, 400, "trainable_token_indices"),
        ({"trainable_token_indices": [100000]}, 400, "outside the base model's vocabulary"),
    ],
)
def test_bad_submissions_are_refused_before_a_job_exists(
    api: httpx.Client, server: RunningServer, fields: dict, status: int, detail: str
) -> None:
    (server.data_dir / "datasets/broken.jsonl").write_text(
        '{"prompt": "a", "completion": "b"}\n{oops\n'
    )
    taken = server.data_dir / "models/lora/taken"
    taken.mkdir(parents=True, exist_ok=True)
    (taken / "adapter_config.json").write_text("{}")
    before = api.get("/train/history").json()["total_count"]
    body = {"base_model": "tiny", "dataset_path": "datasets/memorize.jsonl", **fields}
    response = api.post("/train", json=body)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert api.get("/train/history").json()["total_count"] == before


def test_modules_to_save_and_trainable_tokens_train_save_and_serve(
    api: httpx.Client, server: RunningServer
) -> None:
    """The LM head trains in full and two embedding rows as trainable tokens, next to LoRA."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(server.data_dir / "models/tiny-llama")
    token_ids = sorted(set(tokenizer.encode("hello world", add_special_tokens=False)))
    task_id = submit(
        api,
        output_dir="models/lora/full-head",
        num_epochs=20,
        batch_size=4,
        learning_rate=1e-2,
        lora_r=8,
        modules_to_save=["lm_head"],
        trainable_token_indices=token_ids,
        load_on_completion=True,
    )
    status = wait_done(api, task_id)
    assert status["status"] == "completed", status["error"]
    adapter = server.data_dir / "models/lora/full-head"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert "lm_head" in config["modules_to_save"]
    assert config["trainable_token_indices"] == token_ids
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert any("lm_head" in k for k in keys) and any("trainable_tokens" in k for k in keys)
    served = status["result"]["served_as"]
    assert chat(api, served, "say hi") == "hello world"
    assert chat(api, "tiny", "say hi") != "hello world"  # the base keeps its own head


def test_a_module_name_matching_nothing_fails_the_job(api: httpx.Client) -> None:
    task_id = submit(api, output_dir="models/lora/typo", modules_to_save=["lm_haed"])
    status = wait_done(api, task_id)
    assert status["status"] == "failed"
    assert "no module named 'lm_haed'" in status["error"]


def test_a_failing_worker_fails_its_job_and_the_server_keeps_serving(
    api: httpx.Client, server: RunningServer
) -> None:
    broken = server.data_dir / "models/broken-llama"
    save_llama(broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # config fine, weights truncated
    task_id = submit(api, base_model="models/broken-llama", output_dir="models/lora/broken")
    status = wait_done(api, task_id)
    assert status["status"] == "failed"
    assert status["error"].startswith("while loading the base model: ")
    assert "SafetensorError" in status["error"]
    assert status["finished_at"] is not None
    assert chat(api, "tiny", "say hi")  # still serving
    assert api.get("/health").json()["trainer"] is True


def test_a_killed_worker_fails_its_job_with_the_reason(
    api: httpx.Client, server: RunningServer
) -> None:
    task_id = submit(api, output_dir="models/lora/killed", num_epochs=1000, batch_size=1)
    wait_for(api, task_id, lambda s: s["current_step"] >= 2)
    for process in worker_processes(server):
        process.send_signal(signal.SIGKILL)  # what the kernel's OOM killer does
    status = wait_done(api, task_id)
    assert status["status"] == "failed"
    assert "killed by SIGKILL" in status["error"]
    assert chat(api, "tiny", "say hi")


def test_cancel_stops_the_worker(api: httpx.Client, server: RunningServer) -> None:
    task_id = submit(api, output_dir="models/lora/cancelled", num_epochs=1000, batch_size=1)
    wait_for(api, task_id, lambda s: s["current_step"] >= 2)
    response = api.post(f"/train/{task_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert worker_processes(server) == []
    time.sleep(1)
    status = api.get(f"/train/status/{task_id}").json()
    assert status["status"] == "cancelled" and status["current_step"] < status["total_steps"]
    again = api.post(f"/train/{task_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    assert api.post("/train/no-such-job/cancel").status_code == 404


def test_history_is_newest_first_paginated_and_filtered(api: httpx.Client) -> None:
    ids = [submit(api, output_dir=f"models/lora/history-{i}", max_steps=1) for i in range(3)]
    for task_id in ids[1:]:  # queued behind the first (one job at a time) or already running
        assert api.post(f"/train/{task_id}/cancel").json()["status"] == "cancelled"
    assert wait_done(api, ids[0])["status"] == "completed"
    history = api.get("/train/history", params={"limit": 2}).json()
    assert [t["task_id"] for t in history["tasks"]] == [ids[2], ids[1]]
    assert history["total_count"] >= 3 and history["tasks"][0]["loss_history"] is None
    page = api.get("/train/history", params={"limit": 1, "offset": 2}).json()
    assert [t["task_id"] for t in page["tasks"]] == [ids[0]]
    cancelled = api.get("/train/history", params={"status": "cancelled"}).json()
    assert {ids[1], ids[2]} <= {t["task_id"] for t in cancelled["tasks"]}
    assert all(t["status"] == "cancelled" for t in cancelled["tasks"])
    assert api.get("/train/history", params={"status": "bogus"}).status_code == 400
    assert api.get("/train/history", params={"offset": 10**30}).status_code == 400
    assert api.get("/train/status/no-such-job").status_code == 404
    assert api.get("/train/status/no-such-job/stream").status_code == 404


def test_two_processes_train_data_parallel(api: httpx.Client, server: RunningServer) -> None:
    task_id = submit(
        api,
        base_model="models/tiny-llama",  # a directory this time, not the loaded model's name
        output_dir="models/lora/ddp",
        num_processes=2,
        num_epochs=1,
        batch_size=4,
        load_on_completion=True,
        served_model_name="tiny-ddp",
    )
    status = wait_done(api, task_id)
    assert status["status"] == "completed", status["error"]
    assert status["result"]["num_processes"] == 2
    # 16 examples, batch 4 per process, 2 processes: 2 optimizer steps per epoch.
    assert status["total_steps"] == 2
    assert (server.data_dir / "models/lora/ddp/adapter_model.safetensors").is_file()
    # The base was not loaded under that name, so the result was loaded as a model of its own.
    assert status["result"]["served_as"] == "tiny-ddp"
    model = api.get("/models/tiny-ddp").json()
    assert model["lora_adapter"].endswith("models/lora/ddp")
    assert chat(api, "tiny-ddp", "say hi")
    assert api.post("/models/unload", params={"model_name": "tiny-ddp"}).status_code == 200


def test_interrupted_by_a_server_crash_then_resumed(tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    checkpoints = data_dir / "models/lora/resumed/checkpoints"
    body = {
        "base_model": "tiny",
        "dataset_path": "datasets/memorize.jsonl",
        "output_dir": "models/lora/resumed",
        "max_steps": 200,  # the orphaned worker must still be mid-run when it stops
        "batch_size": 1,
        "save_steps": 5,
    }
    with start_server(data_dir, *TINY, env=ENV) as first, httpx.Client(base_url=first.url) as api:
        task_id = api.post("/train", json=body).json()["task_id"]
        deadline = time.monotonic() + 120
        saved = checkpoints / "checkpoint-5" / "trainer_state.json"  # written last
        while not saved.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = worker_processes(first)
        first.process.send_signal(signal.SIGKILL)  # a crash: no shutdown hook runs
        first.process.wait()
        psutil.wait_procs(workers, timeout=30)  # orphans notice and stop
    assert all(not p.is_running() for p in workers)
    with start_server(data_dir, *TINY, env=ENV) as second, httpx.Client(base_url=second.url) as api:
        status = api.get(f"/train/status/{task_id}").json()
        assert status["status"] == "interrupted"
        response = api.post(f"/train/{task_id}/resume")
        assert response.status_code == 200 and response.json()["status"] == "queued"
        status = wait_done(api, task_id)
        assert status["status"] == "completed", status["error"]
        assert status["result"]["resumed_from"].startswith("checkpoint-")
        assert status["current_step"] == 200
        steps = [p["step"] for p in status["loss_history"]]
        assert steps == sorted(set(steps)) and steps[-1] == 200
        again = api.post(f"/train/{task_id}/resume")
        assert again.status_code == 409


def test_cli_trains_locally_with_a_progress_bar(tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    command = [sys.executable, "-m", "gpt_service.cli", "train", "--data-dir", str(data_dir)]
    env = {**os.environ, **ENV, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    options = ["--max-steps", "3", "--save-steps", "3", "--output-dir", "models/lora/cli"]
    first = [*command, "models/tiny-llama", "datasets/memorize.jsonl", *options]
    done = subprocess.run(first, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stderr and "3/3" in done.stderr
    adapter = data_dir / "models/lora/cli/adapter_model.safetensors"
    assert adapter.is_file()
    store = JobStore(f"sqlite:///{data_dir / 'gpt_service.sqlite3'}")
    jobs, total = store.list(TRAIN)
    assert total == 1 and jobs[0].status == "completed"

    # A crash after the last checkpoint but before the result was saved: resuming takes the
    # checkpoint as it is (no step past max_steps) and writes the adapter.
    store.update(jobs[0].id, status="interrupted")
    adapter.unlink()
    again = subprocess.run(
        [*command, "--resume", jobs[0].id], capture_output=True, text=True, env=env, timeout=300
    )
    assert again.returncode == 0, again.stderr
    job = store.get(jobs[0].id, TRAIN)
    assert job.status == "completed" and adapter.is_file()
    assert job.result["global_step"] == 3 and job.result["resumed_from"] == "checkpoint-3"
