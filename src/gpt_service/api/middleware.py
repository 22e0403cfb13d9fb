"""Pure ASGI middleware (safe for SSE streams): request ids, body limit, API keys, metrics.

Pure ASGI rather than ``BaseHTTPMiddleware`` so streaming responses and client disconnects
pass straight through to the route.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpt_service.api.errors import ErrorShapes

logger = logging.getLogger(__name__)

# Paths that never need a key: liveness, and the console's static shell (it asks for a key).
OPEN_PATHS = ("/health", "/ready")
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode()
    header_list = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    header_list += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Request id (from ``X-Request-ID`` or new) on the scope, the response and the access log;
    request counts and latency per route for ``/metrics``."""

    def __init__(self, app: ASGIApp, observer: Any = None) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _header(scope, b"x-request-id") or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            logger.info(
                "request_id=%s method=%s path=%s status=%s duration_ms=%.1f",
                rid, scope["method"], scope["path"], status, elapsed * 1000,
            )  # fmt: skip
            if self.observer is not None:
                self.observer.on_http(scope["method"], path, status, elapsed)


_BODY_METHODS = ("POST", "PUT", "PATCH")
_JSON = b"application/json"


def _is_json(content_type: bytes) -> bool:
    main = content_type.split(b";")[0].strip().lower()
    return main == _JSON or main.endswith(b"+json")


class JsonBodyMiddleware:
    """Every body is read as JSON whatever its Content-Type says (none, or curl -d's
    ``application/x-www-form-urlencoded``, as Ollama's documentation writes its examples):
    no route here takes form data, so the header is rewritten to ``application/json``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
            content_type = next(
                (v for k, v in scope.get("headers", []) if k == b"content-type"), b""
            )
            if not _is_json(content_type):
                scope = {**scope, "headers": [*headers, (b"content-type", _JSON)]}
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over the limit, by Content-Length or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int, shapes: ErrorShapes) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body exceeds the limit of {self.max_bytes} bytes"
        body = self.shapes.body(scope["path"], 413, message)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, body, {})
            return
        received = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            msg = await receive()
            if msg["type"] == "http.request" and not rejected:
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    # Answer 413 now; the app sees a disconnect and its response is dropped.
                    rejected = True
                    await _send_json(send, 413, body, {})
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            if not rejected:
                await send(msg)

        await self.app(scope, limited_receive, guarded_send)


class ApiKeyMiddleware:
    """When keys are configured, every route but liveness (and docs if allowed) needs one:
    ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

    def __init__(self, app: ASGIApp, keys: list[str], docs_open: bool, shapes: ErrorShapes) -> None:
        self.app = app
        self.shapes = shapes
        self.keys = [k.encode() for k in keys]
        self.open = OPEN_PATHS + (DOCS_PATHS if docs_open else ()) + ("/ui",)

    def _is_open(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.open)

    def _presented(self, scope: Scope) -> str | None:
        auth = _header(scope, b"authorization")
        if auth and auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return _header(scope, b"x-api-key")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = self._presented(scope)
        if key and any(hmac.compare_digest(key.encode(), k) for k in self.keys):
            await self.app(scope, receive, send)
            return
        message = "missing API key" if not key else "invalid API key"
        message += ": send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        body = self.shapes.body(scope["path"], 401, message)
        await _send_json(send, 401, body, {"WWW-Authenticate": "Bearer"})
