"""Which remote engines this server may call: URL checks, the allow-list, settings' remotes."""

from __future__ import annotations

import httpx

from gpt_service.config import RemoteModelSettings, RemoteSettings
from gpt_service.errors import Forbidden, InvalidRequest
from gpt_service.remote.model import RemoteSpec
from gpt_service.remote.pool import redact_url


def _bases(listed: RemoteModelSettings) -> list[str]:
    return listed.base_url if isinstance(listed.base_url, list) else [listed.base_url]


def configured_specs(settings: RemoteSettings) -> list[RemoteSpec]:
    return [
        RemoteSpec(m.name, _bases(m), m.remote_model, m.api_key, m.model_path)
        for m in settings.models
    ]


def check_urls(urls: list[str]) -> list[str]:
    cleaned = [u.strip().rstrip("/") for u in urls if u.strip()]
    if not cleaned:
        raise InvalidRequest("base_url must name at least one remote engine URL")
    for url in cleaned:
        shown = redact_url(url)
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest(f"base_url '{shown}' must start with http:// or https://")
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL as exc:
            raise InvalidRequest(f"base_url '{shown}' is not a valid URL: {exc}") from None
        if not host:
            raise InvalidRequest(f"base_url '{shown}' names no host")
    return cleaned


def is_under(url: str, prefix: str) -> bool:
    """``url`` calls the host of ``prefix`` under its path, compared as parsed URLs (as httpx
    will connect), not as text: ``http://gpu-1:8000@evil/v1`` or ``http://gpu-1:8000.evil/``
    start with ``http://gpu-1:8000`` but call another host, and ``/v1/../admin`` leaves
    ``/v1``."""
    try:
        target, allowed = httpx.URL(url), httpx.URL(prefix.strip())
    except httpx.InvalidURL:
        return False
    if (target.scheme, target.host, target.port) != (allowed.scheme, allowed.host, allowed.port):
        return False
    if not allowed.host:
        return False
    base = allowed.path.rstrip("/")
    return target.path == base or target.path.startswith(base + "/")


def check_allowed(urls: list[str], settings: RemoteSettings) -> None:
    """Every URL under an allowed prefix (the allow-list, or a remote listed in settings)."""
    prefixes = [p for p in settings.allowed_urls if p]
    prefixes += [b.rstrip("/") for m in settings.models for b in _bases(m)]
    for url in urls:
        if not any(is_under(url, prefix) for prefix in prefixes):
            raise Forbidden(
                f"base_url '{redact_url(url)}' is not allowed: this server only calls remote engines "
                "under the prefixes in GPT_SERVICE_REMOTE__ALLOWED_URLS"
            )
