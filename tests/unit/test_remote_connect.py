"""Registering a remote model against a real (loopback) upstream that lists other models:
a 404 that closes the pool's HTTP client, and an odd ``max_model_len`` is no 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpt_service.errors import ModelNotFound
from gpt_service.remote.model import RemoteSpec, connect
from gpt_service.remote.pool import ReplicaPool
from tests import fake_upstream

CARDS = [{"id": "other", "max_model_len": "lots"}, {"id": "big", "max_model_len": 4096}]


class _Models(fake_upstream.Handler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_json({"object": "list", "data": CARDS})


@pytest.fixture
def upstream() -> Iterator[str]:
    with fake_upstream.serving(_Models) as server:
        yield fake_upstream.url(server, "/v1")


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
