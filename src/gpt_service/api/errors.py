"""One place that turns exceptions into ``{"detail": "..."}`` responses with the right status."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpt_service.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceError,
    Unavailable,
    UpstreamError,
)

logger = logging.getLogger(__name__)

_STATUS: list[tuple[type[ServiceError], int]] = [
    (InvalidRequest, 400),
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (Unavailable, 503),
    (UpstreamError, 502),
]


def status_for(exc: ServiceError) -> int:
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


def format_validation_error(exc: RequestValidationError) -> str:
    """Pydantic's error list as one readable sentence, e.g. ``temperature: ... (body)``."""
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            parts.append(_json_error(exc.body, err))
            continue
        if err.get("type") == "unknown_field":  # the message names the field already
            parts.append(str(err.get("msg")))
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "request body"
        parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"


def _json_error(document: Any, err: Mapping[str, Any]) -> str:
    """``malformed JSON body at line 3, column 5: Expecting ',' delimiter``."""
    reason = str((err.get("ctx") or {}).get("error", "invalid JSON"))
    loc = err.get("loc", ())
    position = loc[-1] if loc and isinstance(loc[-1], int) else None
    if isinstance(document, bytes):
        document = document.decode("utf-8", errors="replace")
    if position is None or not isinstance(document, str):
        return f"malformed JSON body: {reason}"
    located = json.JSONDecodeError(reason, document, position)
    return f"malformed JSON body at line {located.lineno}, column {located.colno}: {reason}"


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "-")


ErrorShaper = Callable[[int, str], dict[str, Any]]


@dataclass(frozen=True)
class ErrorShapes:
    """Error bodies by path prefix: an API dialect answers in its own shape under its router's
    prefix (OpenAI's error object under ``/v1``, Ollama's ``{"error": ...}`` under ``/api``),
    everything else ``{"detail": "..."}``. Built from the routers by ``api/routers.py``."""

    by_prefix: tuple[tuple[str, ErrorShaper], ...] = ()

    def shaper(self, path: str) -> ErrorShaper | None:
        for prefix, shaper in self.by_prefix:
            if path == prefix or path.startswith(prefix + "/"):
                return shaper
        return None

    def body(self, path: str, status: int, message: str) -> dict[str, Any]:
        shaper = self.shaper(path)
        return shaper(status, message) if shaper is not None else {"detail": message}


def install_error_handlers(app: FastAPI, shapes: ErrorShapes) -> None:
    def error_response(
        request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        body = shapes.body(request.url.path, status, message)
        return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        status = status_for(exc)
        headers = None
        if isinstance(exc, Unavailable) and exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
        if status >= 500 and status != 503:
            logger.error("request %s failed: %s", request_id(request), exc.message)
        return error_response(request, status, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, format_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        logger.exception("request %s: unhandled error", rid)
        return error_response(request, 500, f"internal server error (request id {rid})")
