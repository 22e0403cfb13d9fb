"""The allow-list of remote engine URLs compares parsed URLs, as httpx connects, not text."""

from __future__ import annotations

import pytest

from gpt_service.config import RemoteSettings
from gpt_service.errors import Forbidden, InvalidRequest
from gpt_service.remote.settings import check_allowed, check_urls

ALLOWED = RemoteSettings(allowed_urls=["http://gpu-1:8000", "https://vllm.example/v1/"])


@pytest.mark.parametrize(
    "url",
    [
        "http://gpu-1:8000/v1",
        "http://gpu-1:8000",
        "http://GPU-1:8000/v1",
        "https://vllm.example/v1",
        "https://vllm.example/v1/sub",
    ],
)
def test_urls_under_an_allowed_prefix_pass(url: str) -> None:
    check_allowed(check_urls([url]), ALLOWED)


@pytest.mark.parametrize(
    "url",
    [
        "http://gpu-1:8000@evil.example/v1",  # userinfo: the host is evil.example
        "http://gpu-1:8000x/v1",  # another port (here: none)
        "http://gpu-1:80001/v1",  # another port
        "https://vllm.example/v1/../admin",  # leaves /v1 once normalised
        "https://vllm.example/v10",  # not under /v1
        "http://vllm.example/v1",  # another scheme
    ],
)
def test_urls_that_only_start_with_a_prefix_are_refused(url: str) -> None:
    with pytest.raises((Forbidden, InvalidRequest)):
        check_allowed(check_urls([url]), ALLOWED)


def test_settings_remotes_stay_allowed() -> None:
    listed = RemoteSettings.model_validate(
        {"models": [{"name": "big", "base_url": "http://gpu-2:8000/v1/", "remote_model": "m"}]}
    )
    check_allowed(check_urls(["http://gpu-2:8000/v1"]), listed)
    with pytest.raises(Forbidden):
        check_allowed(check_urls(["http://gpu-2:8000/v1@evil.example/v1"]), listed)


@pytest.mark.parametrize("url", ["http://gpu-1:port/v1", "http:///v1"])
def test_unparseable_urls_are_a_400(url: str) -> None:
    with pytest.raises(InvalidRequest):
        check_urls([url])
