"""Graceful shutdown: SIGTERM stops accepting, lets in-flight requests finish, then exits."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from tests.server import start_server


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path):
    env = {"GPT_SERVICE_SHUTDOWN_GRACE_SECONDS": "90"}
    with start_server(tmp_path / "data", env=env) as server:
        results: dict[str, httpx.Response] = {}
        body = {"prompt": "你好", "max_tokens": 120, "ignore_eos": True, "temperature": 0}

        def call() -> None:
            results["r"] = httpx.post(f"{server.url}/generate", json=body, timeout=120)

        worker = threading.Thread(target=call)
        worker.start()
        for _ in range(100):  # wait until the request is really being generated
            if httpx.get(f"{server.url}/models/demo").json()["num_running"] == 1:
                break
        server.process.send_signal(signal.SIGTERM)
        worker.join(timeout=120)
        assert results["r"].status_code == 200
        assert results["r"].json()["tokens_generated"] == 120
        # uvicorn re-raises the signal once its graceful shutdown is complete.
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        log = server.log()
        assert "Application shutdown complete" in log and "unloaded model demo" in log
