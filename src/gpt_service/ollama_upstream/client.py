"""Async client for an upstream Ollama server (or another gpt-service's ``/api``).

One pooled ``httpx.AsyncClient`` for the app's lifetime. Transport failures and upstream
answers are mapped to the service's error categories, so the HTTP layer needs no Ollama
knowledge: connection refused -> ``Unavailable`` (503), upstream 404 -> ``NotFound``,
upstream 400 -> ``InvalidRequest``, anything else -> ``UpstreamError`` (502).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from gpt_service.errors import (
    InvalidRequest,
    NotFound,
    ServiceError,
    Unavailable,
    UpstreamError,
)

logger = logging.getLogger(__name__)

REACHABLE_TTL_SECONDS = 5.0  # /health is polled often; one probe per TTL is enough
PROBE_TIMEOUT_SECONDS = 2.0


@dataclass
class ProxyCounters:
    """What /ollama/stats and /metrics report about proxied calls."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_seconds_total: float = 0.0

    @property
    def mean_latency_ms(self) -> float | None:
        if not self.requests:
            return None
        return round(1000 * self.latency_seconds_total / self.requests, 2)


def upstream_message(body: str) -> str:
    """The readable part of an error body: Ollama's ``error`` or our ``detail``."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        message = data.get("error") or data.get("detail")
        if message:
            return str(message)
    return body.strip()[:500]


def error_for_status(status: int, message: str) -> ServiceError:
    text = f"Ollama upstream: {message}"
    if status == 404:
        return NotFound(text)
    if status == 400:
        return InvalidRequest(text)
    if status == 503:
        return Unavailable(text, retry_after=1)
    return UpstreamError(f"Ollama upstream answered HTTP {status}: {message}")


class OllamaClient:
    def __init__(
        self,
        base_url: str,
        read_timeout: float = 300.0,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # write/pool are bounded too: a wedged upstream must not hold a request forever.
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=30.0, pool=connect_timeout
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )
        self.stats = ProxyCounters()
        self._probe: tuple[float, bool] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    def counters(self) -> dict[str, float]:
        """Plain numbers for the Prometheus collector."""
        s = self.stats
        return {
            "requests": s.requests,
            "errors": s.errors,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "latency_seconds_total": round(s.latency_seconds_total, 6),
        }

    # ---- error mapping and accounting -------------------------------------------------
    @asynccontextmanager
    async def _call(self, what: str, counted: bool = True) -> AsyncIterator[None]:
        start = time.perf_counter()
        try:
            yield
        except ServiceError:
            self._count_error(counted)
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._count_error(counted)
            self._probe = (time.monotonic(), False)  # /health says so at once, not after the TTL
            raise Unavailable(
                f"Ollama upstream at {self.base_url} is unreachable ({what}): {exc or type(exc).__name__}",
                retry_after=5,
            ) from exc
        except httpx.TimeoutException as exc:
            self._count_error(counted)
            raise UpstreamError(f"Ollama upstream timed out ({what})") from exc
        except httpx.HTTPError as exc:
            self._count_error(counted)
            raise UpstreamError(f"Ollama upstream failed ({what}): {exc}") from exc
        else:
            self._probe = (time.monotonic(), True)  # it answered: up, whatever the cache said
        finally:
            if counted:
                self.stats.requests += 1
                self.stats.latency_seconds_total += time.perf_counter() - start

    def _count_error(self, counted: bool) -> None:
        if counted:
            self.stats.errors += 1

    def _account(self, part: dict[str, Any]) -> None:
        if part.get("done"):
            self.stats.prompt_tokens += int(part.get("prompt_eval_count") or 0)
            self.stats.completion_tokens += int(part.get("eval_count") or 0)

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise error_for_status(response.status_code, upstream_message(response.text))
        try:
            data = response.json()
        except ValueError as exc:
            raise UpstreamError("Ollama upstream answered with invalid JSON") from exc
        if not isinstance(data, dict):
            raise UpstreamError("Ollama upstream answered with an unexpected JSON value")
        if data.get("error"):
            raise UpstreamError(f"Ollama upstream: {data['error']}")
        return data

    # ---- plain calls ------------------------------------------------------------------
    async def get_json(self, path: str, counted: bool = True) -> dict[str, Any]:
        async with self._call(f"GET {path}", counted):
            return self._decode(await self._http.get(path))

    async def post_json(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._call(f"POST {path}"):
            data = self._decode(await self._http.post(path, json={**payload, "stream": False}))
            self._account(data)
            return data

    async def version(self, counted: bool = True) -> str:
        return str((await self.get_json("/api/version", counted)).get("version", ""))

    async def tags(self, counted: bool = True) -> list[dict[str, Any]]:
        return list((await self.get_json("/api/tags", counted)).get("models") or [])

    async def ps(self, counted: bool = True) -> list[dict[str, Any]]:
        return list((await self.get_json("/api/ps", counted)).get("models") or [])

    # ---- streaming calls (NDJSON) -----------------------------------------------------
    async def stream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST with ``stream: true`` and yield each NDJSON object; an ``error`` line raises."""
        async with (
            self._call(f"POST {path}"),
            self._http.stream("POST", path, json={**payload, "stream": True}) as response,
        ):
            if response.status_code >= 400:
                await response.aread()
                raise error_for_status(response.status_code, upstream_message(response.text))
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                part = _parse_line(line)
                self._account(part)
                yield part

    def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        """Progress objects of an upstream pull, ending with ``{"status": "success"}``.

        Streamed even when the caller wants one answer: the read timeout then bounds the
        silence between progress lines, not the whole download.
        """
        return self.stream("/api/pull", {"model": model, "name": model})

    # ---- health -----------------------------------------------------------------------
    async def is_reachable(self, max_age: float = REACHABLE_TTL_SECONDS) -> bool:
        now = time.monotonic()
        if self._probe is not None and now - self._probe[0] < max_age:
            return self._probe[1]
        try:
            response = await self._http.get("/api/version", timeout=PROBE_TIMEOUT_SECONDS)
            is_up = response.status_code == 200
        except httpx.HTTPError:
            is_up = False
        self._probe = (time.monotonic(), is_up)
        return is_up


def _parse_line(line: str) -> dict[str, Any]:
    try:
        part = json.loads(line)
    except ValueError as exc:
        raise UpstreamError(f"Ollama upstream sent an invalid stream line: {line[:200]!r}") from exc
    if not isinstance(part, dict):
        raise UpstreamError("Ollama upstream sent an unexpected stream value")
    if part.get("error"):
        raise _stream_error(str(part["error"]))
    return part


def _stream_error(message: str) -> ServiceError:
    # Ollama reports a pull of an unknown model inside the stream (HTTP 200 already sent).
    if "file does not exist" in message or "not found" in message:
        return NotFound(f"Ollama upstream: {message}")
    return UpstreamError(f"Ollama upstream: {message}")
