"""Remote replicas against real loopback upstreams: one that was down while an adapter was
registered gets it when it comes back, and a timeout says what timed out."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from gpt_service.errors import UpstreamError
from gpt_service.remote.model import RemoteSpec, connect
from gpt_service.remote.pool import ReplicaPool
from tests import fake_upstream

WAIT = 20.0


class Upstream:
    """An OpenAI-compatible upstream serving model ``m`` on a fixed port; it can be stopped
    and started again on that port, and keeps the bodies of its ``load_lora_adapter`` calls."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.loaded: list[dict[str, str]] = []
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        upstream = self

        class Handler(fake_upstream.Handler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_json({"object": "list", "data": [{"id": "m"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = self.read_json()
                if self.path.endswith("/load_lora_adapter"):
                    upstream.loaded.append(body)
                self.send_json({})

        self.server = fake_upstream.start(Handler, self.port)

    def stop(self) -> None:
        if self.server is not None:
            fake_upstream.stop(self.server)
            self.server = None


@pytest.fixture
def two() -> Iterator[tuple[Upstream, Upstream]]:
    made = (Upstream(), Upstream())
    yield made
    for upstream in made:
        upstream.stop()


async def test_a_replica_down_during_registration_gets_the_adapter_when_back(
    two: tuple[Upstream, Upstream],
) -> None:
    up, down = two
    pool = ReplicaPool([up.base, down.base], probe_interval=0.1)
    model = await connect(RemoteSpec("big", [up.base, down.base], "m"), pool, require_up=True)
    try:
        down.stop()
        assert await model.add_adapter("/shared/adapters/a1", "a1") == "a1"
        assert [r.is_up for r in pool.replicas] == [True, False]
        assert up.loaded == [{"lora_name": "a1", "lora_path": "/shared/adapters/a1"}]
        down.start()
        for _ in range(int(WAIT / 0.05)):
            if down.loaded and pool.replicas[1].is_up:
                break
            await asyncio.sleep(0.05)
        assert down.loaded == [{"lora_name": "a1", "lora_path": "/shared/adapters/a1"}]
        assert pool.replicas[1].is_up
    finally:
        await model.close()


async def test_a_read_timeout_says_what_timed_out_and_after_how_long() -> None:
    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    base = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    pool = ReplicaPool([base], read_timeout=0.3)
    try:
        with pytest.raises(UpstreamError) as caught:
            await pool.post_json("/completions", {"model": "m", "prompt": "x"})
        assert "timed out waiting for the answer (0.3 s, ReadTimeout)" in caught.value.message
        assert pool.replicas[0].last_error.startswith("timed out waiting for the answer")
    finally:
        await pool.aclose()
        silent.close()
