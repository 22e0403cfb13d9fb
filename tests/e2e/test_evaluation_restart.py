"""A 200-sample evaluation through a real server survives a restart; a killed run fails with
the reason."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server import RunningServer, start_server

NUM_SAMPLES = 200


def write_dataset(path: Path) -> None:
    """Short bilingual rows in two of the training formats."""
    rows = []
    for i in range(NUM_SAMPLES):
        if i % 2:
            rows.append({"input": f"第{i}题：你好", "expected": f"你好！这是第{i}个回答。"})
        else:
            rows.append({"instruction": f"Repeat: item {i}", "output": f"item {i}"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")


def wait_for(server: RunningServer, eval_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/evaluate/results/{eval_id}", timeout=30).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.5)
    raise AssertionError(f"evaluation {eval_id} never reached {statuses}:\n{server.log()}")


def submit(server: RunningServer, **body: Any) -> str:
    response = httpx.post(f"{server.url}/evaluate", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["eval_id"]


def test_results_survive_restart_and_a_killed_run_fails_with_the_reason(tmp_path: Path):
    data_dir = tmp_path / "data"
    write_dataset(data_dir / "datasets" / "eval200.jsonl")
    with start_server(data_dir) as first:
        done_id = submit(first, dataset_path="datasets/eval200.jsonl", max_tokens=8)
        before = wait_for(first, done_id, {"completed", "failed"})
        assert before["status"] == "completed", before["error"]
        assert len(before["samples"]) == NUM_SAMPLES
        killed_id = submit(first, dataset_path="datasets/eval200.jsonl", max_tokens=64)
        wait_for(first, killed_id, {"running"})
        first.process.kill()  # no graceful shutdown: the row is left 'running'
        first.process.wait(timeout=30)

    with start_server(data_dir) as second:
        after = httpx.get(f"{second.url}/evaluate/results/{done_id}", timeout=30).json()
        assert after["status"] == "completed"
        assert after["scores"] == before["scores"]
        assert set(after["scores"]) == {"perplexity", "exact_match", "bleu", "rouge", "chrf"}
        assert after["details"]["bleu"]["signature"] == before["details"]["bleu"]["signature"]
        assert after["samples"] == before["samples"] and len(after["samples"]) == NUM_SAMPLES
        assert after["samples"][1]["expected"] == "你好！这是第1个回答。"
        killed = httpx.get(f"{second.url}/evaluate/results/{killed_id}", timeout=30).json()
        assert killed["status"] == "failed" and killed["scores"] is None
        assert "submit it again" in killed["error"]  # the reason: it does not resume
        history = httpx.get(f"{second.url}/evaluate/history", timeout=30).json()
        assert [e["eval_id"] for e in history["evaluations"]] == [killed_id, done_id]
        assert httpx.get(f"{second.url}/health", timeout=30).json()["evaluator"] is True
