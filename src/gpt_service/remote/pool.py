"""Replicas of one remote model: least-outstanding-requests choice, failover, probing back in.

A replica that refuses the connection (or times out connecting) is taken out and the request
goes to the next one; nothing was sent, so that retry is safe. A background task probes the
replicas that are out (``GET {base}/models``) and puts them back when they answer. With every
replica out the call is a 503 with ``Retry-After``.

Credentials in a base URL (``http://user:pass@host/v1``) are used for the requests only:
everything shown or logged (``/models``, ``/health``, metric labels, errors) uses the
replica's ``url``, where they are redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gpt_service.errors import InvalidRequest, NotFound, ServiceError, Unavailable, UpstreamError
from gpt_service.remote.failures import describe

logger = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def redact_url(url: str) -> str:
    """``url`` as it may be shown: the user and password of ``user:pass@host`` as ``***``."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(username="***", password=None))


class RedactUrls(logging.Filter):
    """On httpx's logger ("HTTP Request: POST http://user:pass@host/..."): URLs redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_has_userinfo(a) for a in args):
            record.args = tuple(redact_url(str(a)) if _has_userinfo(a) else a for a in args)
        return True


def _has_userinfo(value: object) -> bool:
    return isinstance(value, httpx.URL) and bool(value.userinfo)


def redact_httpx_logs() -> None:
    """Idempotent: install ``RedactUrls`` on httpx's logger."""
    log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactUrls) for f in log.filters):
        log.addFilter(RedactUrls())


@dataclass
class Replica:
    base: str  # base URL ending in /v1, credentials included: for requests only
    url: str = field(init=False)  # what is shown and logged: ``base`` redacted
    outstanding: int = 0
    requests: int = 0
    errors: int = 0
    latency_seconds_total: float = 0.0
    is_up: bool = True
    last_error: str | None = None

    def __post_init__(self) -> None:
        self.url = redact_url(self.base)

    def describe(self) -> dict[str, Any]:
        mean = self.latency_seconds_total / self.requests if self.requests else None
        return {
            "url": self.url,
            "healthy": self.is_up,
            "outstanding": self.outstanding,
            "requests": self.requests,
            "errors": self.errors,
            "mean_latency_ms": round(1000 * mean, 2) if mean is not None else None,
            "last_error": self.last_error,
        }


def upstream_message(response: httpx.Response) -> str:
    """The readable part of an error body: OpenAI's ``error.message``, our ``detail``..."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or f"HTTP {response.status_code}"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("detail", "message", "error"):
            if data.get(key):
                return str(data[key])
    return text.strip()[:500]


def error_for_status(url: str, status: int, message: str) -> ServiceError:
    if status == 404:
        return NotFound(f"remote engine {url}: {message}")
    if status in (400, 422):
        return InvalidRequest(f"remote engine {url} rejected the request: {message}")
    if status == 503:
        return Unavailable(f"remote engine {url} is busy: {message}", retry_after=1)
    return UpstreamError(f"remote engine {url} answered HTTP {status}: {message}")


class ReplicaPool:
    def __init__(
        self,
        urls: list[str],
        api_key: str | None = None,
        read_timeout: float = 300.0,
        connect_timeout: float = 5.0,
        probe_interval: float = PROBE_INTERVAL_SECONDS,
    ) -> None:
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        redact_httpx_logs()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=30.0, pool=connect_timeout
        )
        # Never ``trust_env``: our own callers' keys and proxies have nothing to do upstream.
        self.http = httpx.AsyncClient(
            headers=headers,
            timeout=timeout,
            trust_env=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=32),
        )
        self.probe_interval = probe_interval
        # Awaited when a replica that was out answers again, before it takes requests.
        self.on_recover: Callable[[Replica], Awaitable[None]] | None = None
        self._prober: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._prober is None:
            self._prober = asyncio.create_task(self._probe_loop())

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        await self.http.aclose()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            for replica in self.replicas:
                if not replica.is_up:
                    await self.probe(replica)

    async def probe(self, replica: Replica) -> bool:
        """Back in when the replica answers HTTP at all (a 401 still means it is there)."""
        try:
            await self.http.get(f"{replica.base}/models", timeout=PROBE_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            replica.last_error = f"probe failed: {describe(exc)}"
            return False
        if not replica.is_up:
            logger.info("remote replica %s is back", replica.url)
            if self.on_recover is not None:  # e.g. register the adapters it missed
                await self.on_recover(replica)
        replica.is_up = True
        return True

    # ---- choice ---------------------------------------------------------------------------
    @property
    def num_up(self) -> int:
        return sum(r.is_up for r in self.replicas)

    def pick(self, tried: set[str]) -> Replica:
        """The healthy replica with the fewest requests in flight (first listed on ties)."""
        candidates = [r for r in self.replicas if r.is_up and r.base not in tried]
        if not candidates:
            urls = ", ".join(r.url for r in self.replicas)
            raise Unavailable(
                f"every replica of the remote model is unreachable ({urls}); "
                "they are probed and used again as soon as they answer",
                retry_after=RETRY_AFTER_SECONDS,
            )
        return min(candidates, key=lambda r: r.outstanding)

    def _take_out(self, replica: Replica, exc: Exception) -> None:
        replica.is_up = False
        replica.errors += 1
        replica.last_error = f"connect failed: {describe(exc)}"
        logger.warning("remote replica %s taken out: %s", replica.url, replica.last_error)

    # ---- calls ----------------------------------------------------------------------------
    async def send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        """Open a streamed response on the first replica that accepts the connection.

        The caller reads or closes it and then calls ``done(replica, response, ok)``.
        """
        tried: set[str] = set()
        while True:
            replica = self.pick(tried)
            tried.add(replica.base)
            request = self.http.build_request(method, f"{replica.base}{path}", json=body)
            replica.outstanding += 1
            start = time.perf_counter()
            try:
                response = await self.http.send(request, stream=True)
            except _CONNECT_ERRORS as exc:
                replica.outstanding -= 1
                self._take_out(replica, exc)
                continue
            except httpx.HTTPError as exc:
                replica.outstanding -= 1
                self._finish(replica, start, ok=False, error=describe(exc))
                raise UpstreamError(f"remote engine {replica.url} failed: {describe(exc)}") from exc
            response.extensions["gpt_replica"] = (replica, start)
            if response.status_code >= 400:
                await response.aread()
                await self.done(response, ok=False, error=upstream_message(response))
                raise error_for_status(
                    replica.url, response.status_code, upstream_message(response)
                )
            return response

    async def done(self, response: httpx.Response, ok: bool, error: str | None = None) -> None:
        replica, start = response.extensions.pop("gpt_replica", (None, 0.0))
        await response.aclose()
        if replica is not None:
            replica.outstanding -= 1
            self._finish(replica, start, ok, error)

    @staticmethod
    def _finish(replica: Replica, start: float, ok: bool, error: str | None) -> None:
        replica.requests += 1
        replica.latency_seconds_total += time.perf_counter() - start
        if not ok:
            replica.errors += 1
            replica.last_error = error

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.send("POST", path, body)
        try:
            await response.aread()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            await self.done(response, ok=False, error=str(exc))
            raise UpstreamError(f"remote engine answered unreadably: {exc}") from exc
        await self.done(response, ok=True)
        return data

    async def post_each(self, path: str, body: dict[str, Any]) -> list[tuple[str, str | None]]:
        """POST to every replica that is up (adapter registration); (url, error or None)."""
        results = []
        for replica in self.replicas:
            if not replica.is_up:
                results.append((replica.url, "replica is down"))
                continue
            try:
                response = await self.http.post(f"{replica.base}{path}", json=body)
            except httpx.HTTPError as exc:
                if isinstance(exc, _CONNECT_ERRORS):  # out until probed back (on_recover)
                    self._take_out(replica, exc)
                results.append((replica.url, describe(exc)))
                continue
            error = None if response.status_code < 400 else upstream_message(response)
            results.append((replica.url, error))
        return results

    async def sse(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        """The ``data:`` objects of an SSE response, up to ``[DONE]``."""
        try:
            async for part in self._events(response):
                yield part
        except httpx.HTTPError as exc:  # the upstream went silent or away mid-stream
            raise UpstreamError(f"remote engine stream failed: {describe(exc)}") from exc

    async def _events(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                part = json.loads(data)
            except ValueError as exc:
                raise UpstreamError(f"remote engine sent an invalid event: {data[:200]!r}") from exc
            if isinstance(part, dict) and part.get("error"):
                error = part["error"]
                message = error.get("message") if isinstance(error, dict) else error
                raise UpstreamError(f"remote engine: {message}")
            yield part
