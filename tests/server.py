"""Start a real ``gpt-service serve`` process on a free port of 127.0.0.1 for e2e tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_server(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> RunningServer:
    """Start the process (not waiting for it to be ready); ``port``: a given one (a restart)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir / f"server-{port}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    cmd = [sys.executable, "-m", "gpt_service.cli", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir), "--log-level", "info", *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    return RunningServer(f"http://127.0.0.1:{port}", process, data_dir, log_path)


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@contextmanager
def start_server(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    port: int | None = None,
) -> Iterator[RunningServer]:
    server = spawn_server(data_dir, *args, env=env, port=port)
    try:
        _wait_ready(server, timeout)
        yield server
    finally:
        stop_server(server)


@contextmanager
def start_servers(
    data_dir: Path, *args: str, envs: list[dict[str, str]], timeout: float = 120
) -> Iterator[list[RunningServer]]:
    """Several servers started at the same instant (one per ``envs`` entry)."""
    servers = [spawn_server(data_dir, *args, env=env) for env in envs]
    try:
        for server in servers:
            _wait_ready(server, timeout)
        yield servers
    finally:
        for server in servers:
            stop_server(server)


def _wait_ready(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"server not ready after {timeout}s:\n{server.log()}")
