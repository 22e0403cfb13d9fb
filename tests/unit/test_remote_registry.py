"""Registering remote models against real loopback upstreams (``http.server`` threads):
network calls happen outside the registry's lock, credentials in a base URL are sent but never
shown, replica totals are counters, and remote models count toward ``max_loaded_models``."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpt_service.config import Settings
from gpt_service.engine.registry import ModelRegistry
from gpt_service.errors import Conflict, ModelAlreadyLoaded
from gpt_service.remote.model import RemoteSpec
from tests import fake_upstream
from tests.conftest import app_client, make_settings

SECRET = "s3cret-pw"
WAIT = 20  # seconds before a test gives up on something that should happen at once


class Upstream:
    """An OpenAI-compatible upstream serving model ``m``. ``hang`` holds the answers to the
    paths in it until ``release`` is set (a hung upstream); every request's Authorization
    header is kept in ``auth``."""

    def __init__(self, hang: tuple[str, ...] = ()) -> None:
        self.hang = hang
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.auth: list[str] = []
        upstream = self

        class Handler(fake_upstream.Handler):
            def _answer(self, status: int, body: object) -> None:
                upstream.auth.append(self.headers.get("Authorization", ""))
                if self.path in upstream.hang:
                    upstream.arrived.set()
                    upstream.release.wait(WAIT)
                self.send_json(body, status)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer(200, {"object": "list", "data": [{"id": "m"}]})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/completions"):
                    self._answer(500, {"error": {"message": "upstream broke"}})
                else:
                    self._answer(200, {})

        self.server = fake_upstream.start(Handler)
        self.root = fake_upstream.url(self.server)

    def close(self) -> None:
        self.release.set()
        fake_upstream.stop(self.server)


@pytest.fixture
def upstreams() -> Iterator[list[Upstream]]:
    made: list[Upstream] = []
    yield made
    for upstream in made:
        upstream.close()


def _registry(tmp_path: Path, upstreams: list[Upstream], **overrides: object) -> ModelRegistry:
    settings = make_settings(
        tmp_path, remote={"allowed_urls": [u.root for u in upstreams]}, **overrides
    )
    return ModelRegistry(settings)


def _spec(name: str, upstream: Upstream) -> RemoteSpec:
    return RemoteSpec(name, [f"{upstream.root}/v1"], "m")


async def test_a_hung_upstream_blocks_no_other_registration(
    tmp_path: Path, upstreams: list[Upstream]
) -> None:
    hung, ok = Upstream(hang=("/v1/models",)), Upstream()
    upstreams += [hung, ok]
    registry = _registry(tmp_path, upstreams)
    slow = asyncio.create_task(registry.load_remote(_spec("slow", hung)))
    assert await asyncio.to_thread(hung.arrived.wait, WAIT)  # inside its network call now
    with pytest.raises(ModelAlreadyLoaded, match="is being loaded"):  # the name is reserved
        await asyncio.wait_for(registry.load_remote(_spec("slow", ok)), WAIT / 2)
    await asyncio.wait_for(registry.load_remote(_spec("fast", ok)), WAIT / 2)
    await asyncio.wait_for(registry.unload("fast"), WAIT / 2)
    assert not slow.done() and registry.loading == {"slow"}
    hung.release.set()
    await slow
    assert list(registry.models) == ["slow"] and not registry.loading
    await registry.close()


async def test_an_adapter_registering_on_a_hung_upstream_blocks_nothing_else(
    tmp_path: Path, upstreams: list[Upstream]
) -> None:
    hung, ok = Upstream(hang=("/v1/load_lora_adapter",)), Upstream()
    upstreams += [hung, ok]
    registry = _registry(tmp_path, upstreams)
    (tmp_path / "adapters" / "a1").mkdir(parents=True)
    await registry.load_remote(_spec("big", hung))
    adding = asyncio.create_task(registry.add_adapter("big", "adapters/a1", "a1"))
    assert await asyncio.to_thread(hung.arrived.wait, WAIT)
    with pytest.raises(ModelAlreadyLoaded, match="already has an adapter 'a1'"):
        await asyncio.wait_for(registry.add_adapter("big", "adapters/a1", "a1"), WAIT / 2)
    await asyncio.wait_for(registry.load_remote(_spec("other", ok)), WAIT / 2)
    assert not adding.done()
    hung.release.set()
    assert await adding == "a1" and registry.get("big").adapters == {
        "a1": str(tmp_path / "adapters" / "a1")
    }
    await registry.close()


async def test_remote_models_count_toward_max_loaded_models(
    tmp_path: Path, upstreams: list[Upstream]
) -> None:
    upstreams.append(Upstream())
    registry = _registry(tmp_path, upstreams, limits={"max_loaded_models": 1})
    await registry.load_remote(_spec("one", upstreams[0]))
    with pytest.raises(Conflict, match="1 models are loaded or loading"):
        await registry.load_remote(_spec("two", upstreams[0]))
    assert list(registry.models) == ["one"]
    await registry.close()


def _no_default_model(tmp_path: Path, upstream: Upstream) -> Settings:
    return make_settings(tmp_path, default_model=None, remote={"allowed_urls": [upstream.root]})


async def test_credentials_in_a_base_url_are_sent_but_never_shown(
    tmp_path: Path, upstreams: list[Upstream], caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream()
    upstreams.append(upstream)
    url = upstream.root.replace("http://", f"http://user:{SECRET}@") + "/v1"
    shown: list[str] = []
    with caplog.at_level(logging.INFO):
        async with app_client(_no_default_model(tmp_path, upstream)) as client:
            body = {"model_name": "r", "backend": "openai", "base_url": url, "remote_model": "m"}
            loaded = await client.post("/models/load", json=body)
            assert loaded.status_code == 200, loaded.text
            failed = await client.post("/generate", json={"model_name": "r", "prompt": "hi"})
            assert failed.status_code == 502
            for path in ("/models/r", "/models", "/health", "/metrics"):
                shown.append((await client.get(path)).text)
            shown += [loaded.text, failed.text]
    expected = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert f"Basic {expected}" in upstream.auth  # the credentials still reach the upstream
    assert "http://***@127.0.0.1" in shown[0]
    shown += [r.getMessage() for r in caplog.records]
    assert not [text for text in shown if SECRET in text]


async def test_replica_totals_are_prometheus_counters(
    tmp_path: Path, upstreams: list[Upstream]
) -> None:
    upstream = Upstream()
    upstreams.append(upstream)
    async with app_client(_no_default_model(tmp_path, upstream)) as client:
        registry = client.app.state.services.registry  # type: ignore[attr-defined]
        await registry.load_remote(_spec("r", upstream))
        await client.post("/generate", json={"model_name": "r", "prompt": "hi"})  # an error
        metrics = (await client.get("/metrics")).text
    labels = f'{{model="r",replica="{upstream.root}/v1"}}'
    for name in ("requests", "errors", "latency_seconds"):
        assert f"# TYPE gpt_remote_replica_{name}_total counter" in metrics
    assert f"gpt_remote_replica_requests_total{labels} 1.0" in metrics
    assert f"gpt_remote_replica_errors_total{labels} 1.0" in metrics
    assert "# TYPE gpt_remote_replica_up gauge" in metrics
