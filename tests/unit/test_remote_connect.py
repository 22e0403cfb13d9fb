"""Registering a remote model against a real (loopback) upstream that lists other models:
a 404 that closes the pool's HTTP client, and an odd ``max_model_len`` is no 500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpt_service.errors import ModelNotFound
from gpt_service.remote.model import RemoteSpec, connect
from gpt_service.remote.pool import ReplicaPool

CARDS = [{"id": "other", "max_model_len": "lots"}, {"id": "big", "max_model_len": 4096}]


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"object": "list", "data": CARDS}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_an_unknown_upstream_model_is_a_404_and_closes_the_pool(upstream: str) -> None:
    pool = ReplicaPool([upstream])
    with pytest.raises(ModelNotFound, match="serves: big, other"):
        await connect(RemoteSpec("x", [upstream], "missing"), pool, require_up=True)
    assert pool.http.is_closed


async def test_a_listed_model_connects_whatever_its_cards_say(upstream: str) -> None:
    pool = ReplicaPool([upstream])
    model = await connect(RemoteSpec("x", [upstream], "big"), pool, require_up=True)
    try:
        assert model.info.context_length == 4096
    finally:
        await model.close()
